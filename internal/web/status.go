package web

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// StatusSource is the status of a node without a Machine (an mds or an
// edge node): the JSON its API serves at /api/v1/status.
type StatusSource interface {
	Encoded() []byte
}

// StatusOptions are the dependencies of the read-only status page of an
// mds or edge node. Sessions, logins and throttling take the defaults of
// Options.
type StatusOptions struct {
	Name string
	// Kind is "mds" or "edge".
	Kind    string
	Status  StatusSource
	History History
	Users   Users
	Secure  bool
	Logger  *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// statusPage is what a status-only Server shows.
type statusPage struct {
	name, kind string
	src        StatusSource
}

// NewStatusPage builds the read-only page of an mds or edge node: login,
// logout, the node's status with the recent audit entries, and the
// history. It has no action; give it to the API as an Authenticator like
// a Server from New, so that the page's script reads the event stream.
func NewStatusPage(o StatusOptions) (*Server, error) {
	if o.Status == nil || o.History == nil || o.Users == nil {
		return nil, errors.New("web: status, history and users are required")
	}
	if o.Name == "" {
		return nil, errors.New("web: a node name is required")
	}
	if o.Kind != "mds" && o.Kind != "edge" {
		return nil, errors.New(`web: kind must be "mds" or "edge", not "` + o.Kind + `"`)
	}
	return newServer(Options{History: o.History, Users: o.Users, Secure: o.Secure, Logger: o.Logger, Now: o.Now},
		&statusPage{name: o.Name, kind: o.Kind, src: o.Status})
}

// snapshot is the node the layout names: the Machine's, or the name and
// kind of a status page.
func (s *Server) snapshot() node.Snapshot {
	if s.status != nil {
		return node.Snapshot{Name: s.status.name, Kind: s.status.kind}
	}
	return s.opts.Machine.Snapshot()
}

func (s *Server) registerStatus(mux *http.ServeMux) {
	mux.Handle("GET /{$}", s.page(s.statusShow))
	mux.Handle("GET /partials/live", s.partial(s.statusLiveShow))
	mux.Handle("GET /history", s.page(s.historyShow))
	mux.Handle("GET /login", s.public(s.loginShow))
	mux.Handle("POST /login", s.public(s.loginSubmit))
	mux.Handle("POST /logout", s.action(false, s.logoutSubmit))
	mux.HandleFunc("GET /static/{name}", s.staticShow)
	mux.Handle("/", s.public(s.notFoundShow))
}

// statusView is the live part of a status page.
type statusView struct {
	Name string
	Kind string
	// Tone sums the node up: bad with an alarm, warn with a route down.
	Tone string
	MDS  *mdsView
	Edge *edgeView
	// Err is set when the status cannot be read.
	Err       string
	Recent    []store.Entry
	RecentErr string
}

// mdsView is the part of app.MDSStatus the page shows.
type mdsView struct {
	Bindings []struct {
		AOR       string    `json:"aor"`
		Contact   string    `json:"contact"`
		Node      string    `json:"node"`
		Source    string    `json:"source"`
		Transport string    `json:"transport"`
		Since     time.Time `json:"since"`
		Expires   time.Time `json:"expires"`
	} `json:"bindings"`
	Alarm    string `json:"alarm"`
	Warnings []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"warnings"`
	Since  time.Time `json:"since"`
	Listen struct {
		UDP string `json:"udp"`
		TCP string `json:"tcp"`
	} `json:"listen"`
}

// edgeView is the part of app.EdgeStatus (edge.Status) the page shows.
type edgeView struct {
	HTTP     string          `json:"http"`
	TLS      bool            `json:"tls"`
	Routes   []edgeRouteView `json:"routes"`
	Nodes    []edgeNodeView  `json:"nodes"`
	Switches int             `json:"switches"`
}

type edgeRouteView struct {
	Name       string    `json:"name"`
	Kind       string    `json:"kind"`
	Host       string    `json:"host"`
	PathPrefix string    `json:"path_prefix"`
	Listen     string    `json:"listen"`
	Chosen     string    `json:"chosen"`
	Since      time.Time `json:"since"`
	Reason     string    `json:"reason"`
	Backends   []struct {
		Name        string      `json:"name"`
		Side        string      `json:"side"`
		Node        string      `json:"node"`
		Address     string      `json:"address"`
		NodeStatus  node.Status `json:"node_status"`
		Epoch       uint64      `json:"epoch"`
		Health      string      `json:"health"`
		HealthError string      `json:"health_error"`
		Usable      bool        `json:"usable"`
		Why         string      `json:"why"`
		Sessions    int         `json:"sessions"`
	} `json:"backends"`
}

type edgeNodeView struct {
	Name       string      `json:"name"`
	Reachable  bool        `json:"reachable"`
	Status     node.Status `json:"status"`
	Epoch      uint64      `json:"epoch"`
	Via        string      `json:"via"`
	ObservedAt time.Time   `json:"observed_at"`
	Error      string      `json:"error"`
}

// statusView decodes the node's status JSON.
func (s *Server) statusView() statusView {
	p := s.status
	sv := statusView{Name: p.name, Kind: p.kind, Tone: "ok"}
	raw := p.src.Encoded()
	var err error
	switch {
	case len(raw) == 0:
		err = errors.New("no status yet")
	case p.kind == "mds":
		sv.MDS = &mdsView{}
		err = json.Unmarshal(raw, sv.MDS)
	default:
		sv.Edge = &edgeView{}
		err = json.Unmarshal(raw, sv.Edge)
	}
	if err != nil {
		sv.MDS, sv.Edge = nil, nil
		sv.Err = "The status of " + p.name + " cannot be read: " + err.Error()
	}
	sv.Tone = summaryTone(sv)
	recent, err := s.opts.History.History(recentEntries, 0)
	if err != nil {
		s.log.Error("read history", "err", err)
		sv.RecentErr = "The audit log cannot be read: " + err.Error()
	}
	sv.Recent = recent
	return sv
}

// summaryTone is the tone of the node's dot.
func summaryTone(sv statusView) string {
	switch {
	case sv.Err != "":
		return "unknown"
	case sv.MDS != nil && sv.MDS.Alarm != "":
		return "bad"
	case sv.Edge != nil:
		for _, r := range sv.Edge.Routes {
			if r.Chosen == "" {
				return "warn"
			}
		}
	}
	return "ok"
}

// statusShow serves GET / on a status page.
func (s *Server) statusShow(w http.ResponseWriter, r *http.Request, v *visit) {
	sv := s.statusView()
	s.render(w, http.StatusOK, "status", pageData{
		Title: kindPage(s.status.kind), Nav: "status", User: v.userView(), CSRF: v.sess.csrf,
		Flash: s.sessions.popFlash(v.id), Refresh: true, RefreshEvery: 5, Tone: sv.Tone, Body: sv,
	})
}

// statusLiveShow serves GET /partials/live on a status page.
func (s *Server) statusLiveShow(w http.ResponseWriter, r *http.Request, v *visit) {
	s.renderFragment(w, http.StatusOK, "status-live", s.statusView())
}

// sampleStatusViews are what smoke renders the status page with.
func sampleStatusViews(now time.Time, entries []store.Entry) []statusView {
	var m mdsView
	if err := json.Unmarshal([]byte(`{"alarm":"two XiVO nodes bound at once","listen":{"udp":"u","tcp":"t"},
		"bindings":[{"aor":"a","contact":"c","node":"n","source":"s","transport":"udp"},{"aor":"a","contact":"c","source":"s"}],
		"warnings":[{"code":"two_xivo_bound","message":"m"}]}`), &m); err != nil {
		panic(err)
	}
	var e edgeView
	if err := json.Unmarshal([]byte(`{"http":"h","tls":true,"switches":1,
		"routes":[{"name":"r","kind":"http","host":"h","path_prefix":"/","chosen":"b","reason":"x","backends":[
			{"name":"b","side":"main","node":"n","node_status":"active","epoch":1,"health":"up","usable":true},
			{"name":"c","side":"standby","node":"m","health":"down","health_error":"e","why":"w"}]},
			{"name":"s","kind":"sip","listen":"l","chosen":"","backends":[]}],
		"nodes":[{"name":"n","reachable":true,"status":"active","epoch":1,"via":"events"},{"name":"m","error":"e"}]}`), &e); err != nil {
		panic(err)
	}
	return []statusView{
		{Name: "mds", Kind: "mds", Tone: "bad", MDS: &m, Recent: entries, RecentErr: "e"},
		{Name: "mds", Kind: "mds", MDS: &mdsView{}},
		{Name: "edge", Kind: "edge", Tone: "warn", Edge: &e, Recent: entries},
		{Name: "edge", Kind: "edge", Edge: &edgeView{}},
		{Name: "edge", Kind: "edge", Err: "e"},
	}
}

// kindGroup is the menu group of a node's page.
func kindGroup(kind string) string {
	switch kind {
	case "mds":
		return "Media server"
	case "edge":
		return "Edge"
	}
	return "IPBX"
}

// kindPage is the name of a node's main page.
func kindPage(kind string) string {
	switch kind {
	case "mds":
		return "Registrar"
	case "edge":
		return "Routes"
	}
	return "Resilience Management"
}

// kindLabel names what a node is, beside its name.
func kindLabel(n node.Snapshot) string {
	switch n.Kind {
	case "mds":
		return "MDS"
	case "edge":
		return "Edge"
	}
	return roleLabel(n.Role)
}

// healthTone colours a backend's health check.
func healthTone(h string) string {
	switch h {
	case "up":
		return "ok"
	case "down":
		return "bad"
	}
	return "idle"
}
