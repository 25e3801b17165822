package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/feed"
	"github.com/xivo-resilience/resilience/internal/mds"
	"github.com/xivo-resilience/resilience/internal/store"
	"github.com/xivo-resilience/resilience/internal/web"
)

// MDSStatus is the status of an mds node, as its API serves it: which
// contact is bound, which XiVO node it belongs to and since when.
type MDSStatus struct {
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Revision uint64        `json:"revision"`
	Bindings []MDSBinding  `json:"bindings"`
	Alarm    string        `json:"alarm,omitempty"`
	Warnings []MDSWarning  `json:"warnings"`
	Since    time.Time     `json:"since"`
	Listen   MDSListenInfo `json:"listen"`
}

// MDSBinding is one contact bound on the registrar.
type MDSBinding struct {
	AOR       string    `json:"aor"`
	Contact   string    `json:"contact"`
	Node      string    `json:"node,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	Since     time.Time `json:"since"`
	Expires   time.Time `json:"expires"`
}

// MDSWarning is an alarm shown on the page.
type MDSWarning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// MDSListenInfo says where the registrar listens.
type MDSListenInfo struct {
	UDP string `json:"udp,omitempty"`
	TCP string `json:"tcp,omitempty"`
}

// mdsNode is an mds node: the registrar, its status feed and the audit of
// what was bound and unbound.
type mdsNode struct {
	name  string
	reg   *mds.Registrar
	store *store.Store
	log   *slog.Logger
	feed  feed.Feed

	bindings prometheus.Gauge
	alarm    prometheus.Gauge

	mu   sync.Mutex
	rev  uint64
	last map[string]mds.Binding // by AOR and contact
}

func newMDS(cfg *config.Config, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*mdsNode, error) {
	r := cfg.Registrar
	users := make(map[string]string, len(r.Users))
	for _, u := range r.Users {
		pw, err := u.Password.Read()
		if err != nil {
			return nil, fmt.Errorf("registrar.users %s: password: %w", u.Username, err)
		}
		users[u.Username] = pw
	}
	n := &mdsNode{
		name: cfg.Name, store: st, log: log, last: map[string]mds.Binding{},
		bindings: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilience_mds_bindings", Help: "Contacts bound on the registrar."}),
		alarm:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilience_mds_alarm", Help: "1 while two XiVO nodes are bound at once."}),
	}
	reg.MustRegister(n.bindings, n.alarm)
	var err error
	n.reg, err = mds.New(mds.Options{
		Name: cfg.Name, UDP: r.UDP, TCP: r.TCP, Realm: r.Realm, Users: users,
		MinExpires: r.MinExpires.D(), MaxExpires: r.MaxExpires.D(), DefaultExpires: r.DefaultExpires.D(),
		Logger: log, OnChange: n.changed,
	})
	if err != nil {
		return nil, err
	}
	n.publish(nil)
	return n, nil
}

// changed records what the registrar's change was and publishes the
// status. The registrar calls it one at a time.
func (n *mdsNode) changed() {
	now := n.reg.Bindings()
	n.mu.Lock()
	cur := make(map[string]mds.Binding, len(now))
	var entries []store.Entry
	for _, b := range now {
		k := b.AOR + " " + b.Contact
		cur[k] = b
		if _, ok := n.last[k]; !ok {
			entries = append(entries, store.Entry{Actor: nodeOr(b.Node, b.Source), Remote: b.Source, Action: "bind", Result: "bound",
				Message: fmt.Sprintf("%s bound %s for %s", nodeOr(b.Node, b.Source), b.Contact, b.AOR)})
		}
	}
	for k, b := range n.last {
		if _, ok := cur[k]; !ok {
			entries = append(entries, store.Entry{Actor: nodeOr(b.Node, b.Source), Remote: b.Source, Action: "bind", Result: "unbound",
				Message: fmt.Sprintf("%s no longer bound (%s)", nodeOr(b.Node, b.Source), b.Contact)})
		}
	}
	n.last = cur
	n.mu.Unlock()
	if len(entries) > 0 {
		if _, err := n.store.Write(nil, entries...); err != nil {
			n.log.Error("write audit", "err", err)
		}
	}
	n.publish(now)
}

func nodeOr(node, source string) string {
	if node != "" {
		return node
	}
	return source
}

func (n *mdsNode) publish(now []mds.Binding) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rev++
	s := MDSStatus{Name: n.name, Kind: "mds", Revision: n.rev, Bindings: []MDSBinding{}, Warnings: []MDSWarning{},
		Since: time.Now().UTC(), Listen: MDSListenInfo{UDP: n.reg.UDPAddr(), TCP: n.reg.TCPAddr()}}
	for _, b := range now {
		s.Bindings = append(s.Bindings, MDSBinding{AOR: b.AOR, Contact: b.Contact, Node: b.Node, UserAgent: b.UserAgent,
			Source: b.Source, Transport: b.Transport, Since: b.Since, Expires: b.Expires})
	}
	if a := n.reg.Alarm(); a != "" {
		s.Alarm = a
		s.Warnings = append(s.Warnings, MDSWarning{Code: "two_xivo_bound", Message: a})
		n.alarm.Set(1)
	} else {
		n.alarm.Set(0)
	}
	n.bindings.Set(float64(len(s.Bindings)))
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // an MDSStatus always encodes
	}
	n.feed.Publish(b)
}

func (n *mdsNode) Encoded() []byte                    { return n.feed.Encoded() }
func (n *mdsNode) Subscribe() (<-chan []byte, func()) { return n.feed.Subscribe() }

// buildMDS wires an mds node: its registrar and a status-only API.
func (a *App) buildMDS(tokens *auth.Tokens, reg *prometheus.Registry, metrics http.Handler) error {
	n, err := newMDS(a.cfg, a.store, reg, a.log)
	if err != nil {
		return err
	}
	a.mds = n
	return a.mountStatusPage(n, "mds", tokens, metrics)
}

// mountStatusPage serves the status-only API of an mds or edge node and,
// beside it on one mux, its read-only web page; the page's session may read
// the API (the event stream) like a bearer token.
func (a *App) mountStatusPage(n api.Source, kind string, tokens *auth.Tokens, metrics http.Handler) error {
	users, err := auth.NewUsers(a.cfg.Auth.Users)
	if err != nil {
		return err
	}
	webSrv, err := web.NewStatusPage(web.StatusOptions{Name: a.cfg.Name, Kind: kind, Status: n, History: a.store,
		Users: users, Secure: a.cfg.Listen.TLS != nil, Logger: a.log})
	if err != nil {
		return err
	}
	apiSrv, err := api.New(api.Options{
		Status:    n,
		History:   a.store,
		Auth:      api.Chain{api.BearerAuth{Tokens: tokens}, webSrv},
		Metrics:   metrics,
		Logger:    a.log,
		Heartbeat: a.heartbeat,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	apiSrv.Register(mux)
	webSrv.Register(mux)
	a.handler = mux
	return nil
}
