package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// pageNames are the full pages; each file defines "title" and "content",
// which templates/layout.html places. Fragments (the live part of the
// page, the confirmation) are defined in templates/partials.html.
var pageNames = []string{"login", "resilience", "history", "confirm", "error", "status"}

// templates are the parsed pages: one template set per page, each a clone
// of the layout and the partials.
type templates struct {
	pages map[string]*template.Template
}

func parseTemplates(fsys fs.FS, funcs template.FuncMap) (*templates, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(fsys, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	t := &templates{pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		clone, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		page, err := clone.ParseFS(fsys, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		for _, need := range []string{"layout", "title", "content", "live", "confirm", "history-table", "flash", "status-live"} {
			if page.Lookup(need) == nil {
				return nil, fmt.Errorf("web: templates: %s.html: no template %q", name, need)
			}
		}
		t.pages[name] = page
	}
	return t, nil
}

// smoke renders every page and fragment once with sample data, so that a
// template that fails when executed (a misspelt field, a function error)
// stops the agent at start-up instead of a page later.
func (s *Server) smoke() error {
	now := s.now()
	snap := node.Snapshot{
		Name: "xivo-main", Kind: "xivo", Role: "main", Mode: "manual", Status: node.Failed, Desired: node.Active,
		Epoch: 2, Since: now, Error: "asterisk: not ready", Transition: &node.Transition{Action: "start", Actor: "admin", StartedAt: now},
		Services: []node.ServiceStatus{
			{Name: "consul", State: node.ServiceRunning, Since: now, Restarts: 1},
			{Name: "asterisk", State: node.ServiceFailed, Error: "not ready", Since: now},
			{Name: "xivo-ctid", State: node.ServiceStarting, Since: now},
		},
		Peer:     &node.PeerView{Name: "xivo-standby", Status: node.Active, Epoch: 1, ObservedAt: now, Error: "unreachable", Takeover: &node.Takeover{From: "xivo-main"}},
		Takeover: &node.Takeover{From: "xivo-standby", Epoch: 2, PeerEpoch: 1, At: now},
		Warnings: []node.Warning{{Code: node.WarnBothActive, Message: "both", Since: now}},
	}
	entries := []store.Entry{{Seq: 1, Time: now, Actor: "admin", Remote: "127.0.0.1", Action: "start", Reason: "r", Result: "ok", Message: "m",
		Services: []store.ServiceResult{{Name: "consul", State: "running", Error: "e"}}}}
	user := &userView{Name: "admin", Role: "admin", Admin: true}
	live := liveView{Snap: snap, Admin: true, Busy: true, Progress: progressOf(snap), Recent: entries, RecentErr: "e"}
	check := &peerCheck{Name: "xivo-standby", Reachable: true, Status: node.Active, Epoch: 1, Serving: true}
	pages := []struct {
		page string
		data pageData
	}{
		{"resilience", pageData{Node: snap, User: user, CSRF: "t", Flash: &flash{Kind: "ok", Text: "x"}, Refresh: true, Nav: "resilience", Body: live}},
		{"resilience", pageData{Node: snap, User: &userView{Name: "v", Role: "viewer"}, Body: liveView{Snap: node.Snapshot{}}}},
		{"history", pageData{Node: snap, User: user, Nav: "history", Body: historyView{Entries: entries, Before: 9, Older: 1, Err: "e"}}},
		{"history", pageData{Node: snap, User: user, Body: historyView{}}},
		{"confirm", pageData{Node: snap, User: user, Body: confirmView{Action: "start", Snap: snap, Services: []string{"a"}, Check: check, Takeover: true, Busy: true, Nothing: "n"}}},
		{"confirm", pageData{Node: snap, User: user, Body: confirmView{Action: "start", Snap: snap, Check: &peerCheck{Error: "e"}, Partial: true}}},
		{"confirm", pageData{Node: snap, User: user, Body: confirmView{Action: "start", Snap: snap, Check: &peerCheck{NoPeer: true}}}},
		{"confirm", pageData{Node: snap, User: user, Body: confirmView{Action: "stop", Snap: snap, Alone: true}}},
		{"confirm", pageData{Node: snap, User: user, Body: confirmView{Action: "stop", Snap: node.Snapshot{}}}},
		{"login", pageData{Node: snap, CSRF: "t", Body: loginView{Username: "u", Error: "e", Notice: "n", Next: "/"}}},
		{"error", pageData{Node: snap, User: user, Body: errorView{Code: 404, Message: "m"}}},
		{"error", pageData{Node: snap, Body: errorView{Code: 404, Message: "m"}}},
	}
	for _, sv := range sampleStatusViews(now, entries) {
		pages = append(pages, struct {
			page string
			data pageData
		}{"status", pageData{Node: node.Snapshot{Name: sv.Name, Kind: sv.Kind}, User: user, CSRF: "t", Nav: "status", Refresh: true, RefreshEvery: 5, Tone: sv.Tone, Body: sv}})
	}
	for _, p := range pages {
		if _, err := s.tmpl.execute(p.page, "layout", p.data); err != nil {
			return fmt.Errorf("web: templates: %s: %w", p.page, err)
		}
	}
	for _, f := range []struct {
		name string
		data any
	}{{"live", live}, {"confirm", confirmView{Action: "stop", Snap: snap}}, {"flash", &flash{Kind: "error", Text: "x"}}} {
		if _, err := s.tmpl.execute("resilience", f.name, f.data); err != nil {
			return fmt.Errorf("web: templates: %s: %w", f.name, err)
		}
	}
	return nil
}

// execute renders a template of a page into a buffer, so that an error
// gives a clean 500 rather than half a page.
func (t *templates) execute(page, name string, data any) ([]byte, error) {
	p, ok := t.pages[page]
	if !ok {
		return nil, fmt.Errorf("no page %q", page)
	}
	var b bytes.Buffer
	if err := p.ExecuteTemplate(&b, name, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// pageData is what the layout needs, plus the page's own Body.
type pageData struct {
	Title string
	// Nav is the menu entry to highlight: "resilience" or "history".
	Nav  string
	Node node.Snapshot
	// User is nil on the login page.
	User *userView
	CSRF string
	// Flash is shown at the top of the page, once.
	Flash *flash
	// Refresh reloads the page every few seconds when JavaScript is off,
	// while a transition runs.
	Refresh bool
	// RefreshEvery is the reload period in seconds (2 if 0).
	RefreshEvery int
	// Tone colours the node's dot in the top bar; the node's status
	// gives it when empty.
	Tone string
	Body any
}

type userView struct {
	Name  string
	Role  string
	Admin bool
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"asset":        func(name string) (string, error) { return s.assets.url(name) },
		"statusLabel":  statusLabel,
		"stateLabel":   func(st node.ServiceState) string { return capitalize(string(st)) },
		"statusTone":   statusTone,
		"stateTone":    stateTone,
		"regTone":      registrationTone,
		"roleLabel":    roleLabel,
		"capitalize":   capitalize,
		"clock":        clock,
		"iso":          func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago":          func(t time.Time) string { return ago(s.now(), t) },
		"warningTone":  warningTone,
		"warningTitle": warningTitle,
		"resultTone":   resultTone,
		"dict":         dict,
		"add":          func(a, b int) int { return a + b },
		"kindGroup":    kindGroup,
		"kindPage":     kindPage,
		"kindLabel":    kindLabel,
		"healthTone":   healthTone,
	}
}

// render writes a full page.
func (s *Server) render(w http.ResponseWriter, code int, page string, data pageData) {
	if data.Node.Name == "" {
		data.Node = s.snapshot()
	}
	b, err := s.tmpl.execute(page, "layout", data)
	if err != nil {
		s.log.Error("render", "page", page, "err", err)
		http.Error(w, "internal error: cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
}

// renderFragment writes one template of partials.html alone, for the
// page's scripts.
func (s *Server) renderFragment(w http.ResponseWriter, code int, name string, data any) {
	b, err := s.tmpl.execute("resilience", name, data)
	if err != nil {
		s.log.Error("render", "fragment", name, "err", err)
		http.Error(w, "internal error: cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b)
}

// renderError writes an error page, or an error fragment for a script.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, v *visit, code int, msg string) {
	if r.URL.Query().Get("partial") != "" {
		s.renderFragment(w, code, "flash", &flash{Kind: "error", Text: msg})
		return
	}
	data := pageData{Title: http.StatusText(code), Body: errorView{Code: code, Message: msg}}
	if v != nil {
		data.User = v.userView()
		data.CSRF = v.sess.csrf
	}
	s.render(w, code, "error", data)
}

type errorView struct {
	Code    int
	Message string
}

func statusLabel(st node.Status) string {
	if st == "" {
		return "Unknown"
	}
	return capitalize(string(st))
}

// statusTone is the colour family of a node status.
func statusTone(st node.Status) string {
	switch st {
	case node.Active:
		return "ok"
	case node.Activating, node.Deactivating:
		return "busy"
	case node.Failed:
		return "bad"
	case node.Inactive:
		return "idle"
	}
	return "unknown"
}

func stateTone(st node.ServiceState) string {
	switch st {
	case node.ServiceRunning:
		return "ok"
	case node.ServiceStarting, node.ServiceStopping:
		return "busy"
	case node.ServiceRestarting:
		return "warn"
	case node.ServiceFailed:
		return "bad"
	}
	return "idle"
}

// registrationTone colours a trunk registration's state.
func registrationTone(state string) string {
	switch state {
	case "registered":
		return "ok"
	case "registering", "unregistering":
		return "busy"
	case "failed":
		return "bad"
	}
	return "idle"
}

// warningTone: a node that must act now is "bad", the rest "warn".
func warningTone(code string) string {
	switch code {
	case node.WarnSuperseded, node.WarnBothActive:
		return "bad"
	}
	return "warn"
}

func warningTitle(code string) string {
	switch code {
	case node.WarnPeerUnreachableAtStart:
		return "The peer was unreachable at the last start"
	case node.WarnStayedInactive:
		return "Stayed inactive after a restart"
	case node.WarnSuperseded:
		return "Superseded: the peer took over"
	case node.WarnPeerStillActive:
		return "Takeover not finished"
	case node.WarnBothActive:
		return "Both nodes are active"
	case node.WarnPeerUnreachable:
		return "The peer is unreachable"
	}
	return capitalize(strings.ReplaceAll(code, "_", " "))
}

// resultTone is the colour of an audit entry's result.
func resultTone(result string) string {
	switch result {
	case "ok", "bound":
		return "ok"
	case "begun":
		return "busy"
	case "failed":
		return "bad"
	case "refused", "stayed_inactive":
		return "warn"
	}
	return "idle"
}

func roleLabel(role string) string {
	switch role {
	case "main":
		return "Main"
	case "standby":
		return "Standby"
	}
	return capitalize(role)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// clock shows a time in the agent's time zone, to the second.
func clock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// ago says how long before now t was, roughly.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

// dict builds a map from key, value pairs, to pass several values to a
// sub-template.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}
