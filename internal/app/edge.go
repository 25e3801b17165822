package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/edge"
	"github.com/xivo-resilience/resilience/internal/feed"
	"github.com/xivo-resilience/resilience/internal/store"
)

// EdgeStatus is the status of an edge node, as its API serves it.
type EdgeStatus struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Revision uint64 `json:"revision"`
	edge.Status
}

// edgeNode is an edge node: the relay, its status feed and the history
// of switches.
type edgeNode struct {
	name  string
	e     *edge.Edge
	store *store.Store
	feed  feed.Feed

	// switches queue the history entries that watch writes; a full queue
	// drops (and the log says so) rather than block the edge.
	switches chan store.Entry

	mu   sync.Mutex
	rev  uint64
	last []byte // the edge.Status last published
}

// buildEdge wires an edge node and its status-only API.
func (a *App) buildEdge(tokens *auth.Tokens, reg *prometheus.Registry, metrics http.Handler) error {
	cfg := a.cfg
	n := &edgeNode{name: cfg.Name, store: a.store, switches: make(chan store.Entry, 256)}
	opts := edge.Options{
		HTTPListen: cfg.Edge.HTTP,
		Drain:      cfg.Edge.Drain.D(),
		RetryAfter: cfg.Edge.RetryAfter.D(),
		Logger:     a.log,
		Registerer: reg,
		OnSwitch:   n.switched,
	}
	if t := cfg.Edge.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("edge.tls: %w", err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if p := cfg.Edge.MaintenancePage; p != "" {
		page, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("edge.maintenance_page: %w", err)
		}
		opts.MaintenancePage = page
	}
	for _, nl := range cfg.Nodes {
		token, err := nl.Token.Read()
		if err != nil {
			return fmt.Errorf("nodes %s: token: %w", nl.Name, err)
		}
		c, err := apiclient.New(nl.URL, token, apiclient.Options{CAFile: nl.CAFile})
		if err != nil {
			return fmt.Errorf("nodes %s: %w", nl.Name, err)
		}
		opts.Nodes = append(opts.Nodes, edge.Named(nl.Name, c))
	}
	for _, r := range cfg.Routes {
		opts.Routes = append(opts.Routes, edge.Route{Name: r.Name, Host: r.Host, PathPrefix: r.PathPrefix,
			Main: edgeBackend(r.Main), Standby: edgeBackend(r.Standby)})
	}
	for _, r := range cfg.SIP {
		opts.SIP = append(opts.SIP, edge.SIPRoute{Name: r.Name, Listen: r.Listen, UDP: r.UDP, TCP: r.TCP,
			Main: edgeBackend(r.Main), Standby: edgeBackend(r.Standby)})
	}
	e, err := edge.New(opts)
	if err != nil {
		return err
	}
	n.e = e
	a.edge = n
	return a.mountStatusPage(n, "edge", tokens, metrics)
}

func edgeBackend(b config.Backend) edge.Backend {
	out := edge.Backend{Name: b.Name, Node: b.Node, Address: b.Address}
	if h := b.Health; h != nil {
		out.Health = &edge.Check{Path: h.Path, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall}
	}
	return out
}

// switched records a switch in the history. It must not block: the
// edge's deciding goroutine calls it.
func (n *edgeNode) switched(s edge.Switch) {
	from, to := s.From, s.To
	if from == "" {
		from = "none"
	}
	if to == "" {
		to = "none (maintenance page)"
	}
	select {
	case n.switches <- store.Entry{Time: s.At.UTC(), Actor: "edge", Action: "switch", Result: s.Route,
		Message: fmt.Sprintf("route %s: %s -> %s (%s)", s.Route, from, to, s.Reason)}:
	default:
	}
}

// watch publishes the edge's status whenever it changes and records
// its switches.
func (n *edgeNode) watch(ctx context.Context) {
	for {
		n.publish()
		select {
		case <-ctx.Done():
			return
		case e := <-n.switches:
			n.store.Write(nil, e)
		case <-n.e.Changes():
		}
	}
}

func (n *edgeNode) publish() {
	st := n.e.Status()
	cur, err := json.Marshal(st)
	if err != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if string(cur) == string(n.last) {
		return
	}
	n.last = cur
	n.rev++
	b, err := json.Marshal(EdgeStatus{Name: n.name, Kind: "edge", Revision: n.rev, Status: st})
	if err != nil {
		return
	}
	n.feed.Publish(b)
}

func (n *edgeNode) Encoded() []byte                    { return n.feed.Encoded() }
func (n *edgeNode) Subscribe() (<-chan []byte, func()) { return n.feed.Subscribe() }
