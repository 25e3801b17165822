package edge

import (
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

// Status is what the Edge's own page and API show: every route with its
// chosen backend and why, and what the Edge knows of every node.
type Status struct {
	// HTTP is the address of the HTTP entry point ("" without one).
	HTTP   string        `json:"http,omitempty"`
	TLS    bool          `json:"tls"`
	Routes []RouteStatus `json:"routes"`
	Nodes  []NodeStatus  `json:"nodes"`
	// Switches counts switches since start, the first choices excluded.
	Switches int `json:"switches"`
}

// RouteStatus is one route.
type RouteStatus struct {
	Name string `json:"name"`
	// Kind is "http" or "sip".
	Kind       string `json:"kind"`
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"path_prefix,omitempty"`
	Listen     string `json:"listen,omitempty"`
	// Chosen is the backend traffic goes to; "" means none is usable and
	// clients get the maintenance page.
	Chosen string `json:"chosen"`
	// Since is when Chosen last changed, and Reason why.
	Since    time.Time       `json:"since"`
	Reason   string          `json:"reason"`
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is one side of a route.
type BackendStatus struct {
	Name    string `json:"name"`
	Side    string `json:"side"` // main or standby
	Node    string `json:"node"`
	Address string `json:"address"`
	// NodeStatus and Epoch are the node's last known status; empty while
	// the node is unreachable.
	NodeStatus node.Status `json:"node_status,omitempty"`
	Epoch      uint64      `json:"epoch"`
	// Health is "up", "down" or "none" (no active check).
	Health      string    `json:"health"`
	HealthError string    `json:"health_error,omitempty"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	// MarkedDown is set after failed connections, until the next passing
	// check or node change.
	MarkedDown bool `json:"marked_down"`
	// ConnectFailures counts failed connections in a row.
	ConnectFailures int `json:"connect_failures"`
	// Usable says whether the backend may take traffic; Why says why not.
	Usable bool   `json:"usable"`
	Why    string `json:"why,omitempty"`
	// Sessions counts open WebSocket (and other upgraded) or SIP TCP
	// sessions through this route; Flows its UDP flows.
	Sessions int `json:"sessions"`
	Flows    int `json:"flows,omitempty"`
}

// NodeStatus is what the Edge knows of a node.
type NodeStatus struct {
	Name      string      `json:"name"`
	Reachable bool        `json:"reachable"`
	Status    node.Status `json:"status,omitempty"`
	Epoch     uint64      `json:"epoch"`
	// Via is "events" while the event stream delivers, "poll" while only
	// polls answer.
	Via              string    `json:"via,omitempty"`
	ObservedAt       time.Time `json:"observed_at,omitzero"`
	Error            string    `json:"error,omitempty"`
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

// Status returns the routes' choices and the nodes' statuses. It takes no
// lock: it copies the view last published by the deciding goroutine and
// adds the live session counts.
func (e *Edge) Status() Status {
	p := e.status.Load()
	s := *p
	s.HTTP = e.HTTPAddr()
	s.Routes = make([]RouteStatus, len(p.Routes))
	copy(s.Routes, p.Routes)
	s.Nodes = append([]NodeStatus(nil), p.Nodes...)
	for i, r := range e.routes {
		rs := &s.Routes[i]
		if r.sip != nil {
			if a := r.sip.addr(); a != "" {
				rs.Listen = a
			}
		}
		rs.Backends = append([]BackendStatus(nil), rs.Backends...)
		for j, t := range r.sides {
			bs := &rs.Backends[j]
			bs.Sessions = t.sessions.len()
			bs.Flows = int(t.flows.Load())
			bs.ConnectFailures = int(t.b.fails.Load())
		}
	}
	return s
}

// publish stores the owner's view for Status.
func (e *Edge) publish() {
	s := &Status{TLS: e.opts.TLS != nil, Switches: e.switchCount}
	for _, r := range e.routes {
		rs := RouteStatus{Name: r.name, Kind: r.kind, Host: r.host, Listen: r.listen, Chosen: nameOf(r.chosen), Since: r.since, Reason: r.reason}
		if r.kind == "http" {
			rs.PathPrefix = r.prefix
		}
		for _, t := range r.sides {
			b := t.b
			bs := BackendStatus{Name: b.cfg.Name, Side: t.side, Node: b.node.name, Address: b.cfg.Address,
				Health: "none", MarkedDown: b.passiveDown, Usable: t.why == "", Why: t.why}
			if b.node.reachable {
				bs.NodeStatus, bs.Epoch = b.node.snap.Status, b.node.snap.Epoch
			}
			if b.cfg.Health != nil {
				bs.Health, bs.HealthError, bs.CheckedAt = "down", b.health.err, b.health.at
				if b.health.up {
					bs.Health = "up"
				}
			}
			rs.Backends = append(rs.Backends, bs)
		}
		s.Routes = append(s.Routes, rs)
	}
	for _, n := range e.nodes {
		ns := NodeStatus{Name: n.name, Reachable: n.reachable, Via: n.via, ObservedAt: n.observedAt, Error: n.err, UnreachableSince: n.downSince}
		if n.reachable {
			ns.Status, ns.Epoch = n.snap.Status, n.snap.Epoch
		}
		s.Nodes = append(s.Nodes, ns)
	}
	e.status.Store(s)
	select {
	case e.changed <- struct{}{}:
	default: // a signal is pending already: it covers this change
	}
}

// Changes receives after Status changed, so that a watcher need not
// poll; one pending signal stands for any number of changes, so read
// Status after each.
func (e *Edge) Changes() <-chan struct{} { return e.changed }
