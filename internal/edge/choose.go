package edge

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xivo-resilience/resilience/internal/node"
)

// The deciding state is owned by the goroutine in run: node statuses,
// health, passive marks and each route's choice change only there, so a
// choice is always computed from one consistent view and switches are
// reported in order. Other goroutines send it closures through e.ops.
// What the request path needs is published in atomics: the route's
// chosen target, and each target's usable flag (for retries).

// nodeWatch is what the Edge knows of one node.
type nodeWatch struct {
	src  NodeSource
	name string
	kick chan struct{} // wakes the poller when the stream drops
	// streaming is true while the event stream delivers; the poller
	// skips polls then.
	streaming atomic.Bool

	// Owned by run.
	snap       node.Snapshot
	known      bool // snap was read from the node at least once
	reachable  bool
	streamUp   bool
	via        string
	err        string
	observedAt time.Time
	downSince  time.Time
	// highest is the highest epoch this node, or its view of its peer,
	// was seen Active at, and by whom. Epochs only grow, so an Active node
	// below it is stale even when the newer one can no longer be seen (a
	// partition, an Edge restarted during a takeover).
	highest   uint64
	highestBy string
}

// backend is the state of one backend, shared by the routes naming it.
type backend struct {
	e    *Edge
	cfg  Backend
	node *nodeWatch
	// fails counts connect failures in a row, from the request path.
	fails atomic.Int32
	// down mirrors passiveDown for the recovery probe.
	down atomic.Bool
	// checkNow asks the check loop for a check at once.
	checkNow chan struct{}

	// Owned by run.
	health      healthState
	passiveDown bool
	passiveErr  string
}

type healthState struct {
	up, known bool
	// vouched: the node went Active since the last pass. Active means
	// its services are up and passed their own readiness checks, so one
	// passing check is enough (not rise): a planned takeover then
	// switches within one check, not rise x interval, and an operator
	// who stops the old side right after the Start loses no request.
	vouched       bool
	passes, fails int
	err           string
	at            time.Time
}

// route is an HTTP or SIP route and its two targets.
type route struct {
	name, kind   string
	host, prefix string // http
	listen       string // sip
	sip          *sipRelay
	sides        [2]*target // main, standby
	// cur is the chosen target, nil when none is usable: the one word the
	// request path reads.
	cur         atomic.Pointer[target]
	unavailable prometheus.Counter

	// Owned by run.
	chosen *target
	since  time.Time
	reason string
}

// target is a backend as one route uses it: its own HTTP transport and
// proxy (so the connections of a side can be told apart and retired), its
// sessions and its counters.
type target struct {
	e     *Edge
	r     *route
	b     *backend
	side  string
	other *target
	// usable is published by run; a failed connection is retried on the
	// other target only while it is usable.
	usable atomic.Bool

	addr      string
	tr        *http.Transport
	proxy     *httputil.ReverseProxy
	pool      backPool // the fast path's idle connections
	codes     [600]atomic.Pointer[prometheus.Counter]
	sessions  sessionSet
	conns     connSet
	sessGauge prometheus.Gauge
	flows     atomic.Int64

	// Owned by run.
	why string // why not usable ("" when usable)
	// staleOnly: the only thing against it is a newer Active side; see
	// recompute's make-before-break.
	staleOnly bool
	gen       uint64 // grows each time the target is chosen
}

// do hands fn to the owning goroutine; false once the Edge is closing.
func (e *Edge) do(fn func()) bool {
	select {
	case e.ops <- fn:
		return true
	case <-e.ctx.Done():
		return false
	}
}

// after runs fn on the owning goroutine after d, unless the Edge closes.
func (e *Edge) after(d time.Duration, fn func()) {
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		e.do(func() {
			delete(e.timers, tm)
			fn()
		})
	})
	e.timers[tm] = struct{}{}
}

// run owns the deciding state: it applies each change, then recomputes
// every route's choice.
func (e *Edge) run() {
	defer func() {
		for tm := range e.timers {
			tm.Stop()
		}
	}()
	for {
		select {
		case <-e.ctx.Done():
			return
		case fn := <-e.ops:
			fn()
			e.recompute()
		}
	}
}

// observe records a status read from a node.
func (e *Edge) observe(n *nodeWatch, s node.Snapshot, via string) {
	if via == "poll" && n.streamUp {
		return // a poll that raced the stream's comeback says nothing newer
	}
	if via == "events" {
		n.streamUp = true
	}
	changed := !n.reachable || !n.known || s.Revision != n.snap.Revision || s.Status != n.snap.Status || s.Epoch != n.snap.Epoch
	if !n.reachable {
		e.log.Info("node reachable", "node", n.name, "status", s.Status, "epoch", s.Epoch, "via", via)
	}
	if s.Status == node.Active && s.Epoch > n.highest {
		n.highest, n.highestBy = s.Epoch, n.name
	}
	if p := s.Peer; p != nil && p.Status == node.Active && p.Epoch > n.highest {
		n.highest, n.highestBy = p.Epoch, p.Name
	}
	n.snap, n.known, n.reachable = s, true, true
	n.via, n.err, n.observedAt, n.downSince = via, "", time.Now(), time.Time{}
	e.m.nodeActive.WithLabelValues(n.name).Set(b2f(s.Status == node.Active))
	e.m.nodeEpoch.WithLabelValues(n.name).Set(float64(s.Epoch))
	if changed {
		// A node's change is news about its services: give a backend
		// marked down by failed connections another chance, and check a
		// node's backends that are down at once when it went Active.
		for _, b := range e.backends {
			if b.node != n {
				continue
			}
			if b.passiveDown {
				e.clearPassive(b, "node "+n.name+" changed")
			}
			if s.Status == node.Active && b.cfg.Health != nil && !b.health.up {
				b.health.vouched = true
				select {
				case b.checkNow <- struct{}{}:
				default: // a check is asked for already
				}
			}
		}
	}
}

// beat records that a node's stream is alive.
func (e *Edge) beat(n *nodeWatch) {
	if n.streamUp {
		n.observedAt = time.Now()
	}
}

// streamDown records a broken event stream; the poller decides whether
// the node is still reachable.
func (e *Edge) streamDown(n *nodeWatch, err error) {
	n.streamUp = false
	if n.reachable {
		n.via = "poll"
		e.log.Warn("node event stream down", "node", n.name, "err", err)
	}
}

// unreachable records a failed status read: the node counts as not Active.
func (e *Edge) unreachable(n *nodeWatch, err error) {
	if n.streamUp {
		return
	}
	if n.reachable || n.err == "" {
		e.log.Warn("node unreachable", "node", n.name, "err", err)
		n.downSince = time.Now()
	}
	n.reachable, n.via, n.err = false, "", err.Error()
	e.m.nodeActive.WithLabelValues(n.name).Set(0)
}

// markDown records N failed connections in a row to a backend.
func (e *Edge) markDown(b *backend, err error) {
	if b.passiveDown {
		return
	}
	b.passiveDown, b.passiveErr = true, err.Error()
	b.down.Store(true)
	e.log.Warn("backend marked down", "backend", b.cfg.Name, "failed_connections", e.opts.MarkDownAfter, "err", err)
}

func (e *Edge) clearPassive(b *backend, why string) {
	b.passiveDown, b.passiveErr = false, ""
	b.down.Store(false)
	b.fails.Store(0)
	e.log.Info("backend no longer marked down", "backend", b.cfg.Name, "why", why)
}

// judge says why t may not be used now, or "" when it may (DESIGN 7):
// its node reachable and Active with the highest epoch known for the
// route's pair, its health check passing, not marked down. Two Active
// nodes at the same epoch are both usable (the nodes raise the alarm).
func (e *Edge) judge(t *target) string {
	n := t.b.node
	switch {
	case !n.reachable && !n.known && n.err == "":
		return "node " + n.name + ": no status yet"
	case !n.reachable:
		return "node " + n.name + " unreachable: " + n.err
	case n.snap.Status != node.Active:
		return "node " + n.name + " is " + string(n.snap.Status)
	}
	high, by := n.highest, n.highestBy
	if o := t.other.b.node; o.highest > high {
		high, by = o.highest, o.highestBy
	}
	if t.b.cfg.Health != nil && !t.b.health.up {
		return "health check failing: " + t.b.health.err
	}
	if t.b.passiveDown {
		return fmt.Sprintf("marked down after %d failed connections: %s", e.opts.MarkDownAfter, t.b.passiveErr)
	}
	if n.snap.Epoch < high {
		t.staleOnly = true
		return fmt.Sprintf("node %s is active at epoch %d, stale: %s was active at epoch %d", n.name, n.snap.Epoch, by, high)
	}
	return ""
}

// recompute judges every target and switches the routes whose choice
// changed. A choice is sticky: while the chosen target stays usable it
// is kept, even if the other becomes usable too (two Active nodes at the
// same epoch), so that traffic does not flap.
func (e *Edge) recompute() {
	if !e.ready {
		return // until every node's first status is in: no choice from half a view
	}
	var switches []Switch
	now := time.Now()
	for _, r := range e.routes {
		for _, t := range r.sides {
			t.staleOnly = false
			t.why = e.judge(t)
			t.usable.Store(t.why == "")
			e.m.up.WithLabelValues(r.name, t.b.cfg.Name).Set(b2f(t.why == ""))
		}
		next := r.chosen
		switch main, standby := r.sides[0], r.sides[1]; {
		case next != nil && next.why == "":
		case main.why == "":
			next = main
		case standby.why == "":
			next = standby
		case next != nil && next.staleOnly:
			// Make-before-break: the newer side took over but cannot be
			// used yet (its health check has not passed); the chosen side
			// still runs and passes its own, so it serves until then
			// rather than nobody.
		default:
			next = nil
		}
		if next == r.chosen {
			if r.since.IsZero() { // the first choice, and none is usable
				r.since, r.reason = now, switchReason(r, nil, nil)
			}
			continue
		}
		old, initial := r.chosen, r.since.IsZero()
		r.chosen, r.since = next, now
		r.cur.Store(next)
		r.reason = switchReason(r, old, next)
		sw := Switch{Route: r.name, From: nameOf(old), To: nameOf(next), Reason: r.reason, At: now}
		switches = append(switches, sw)
		for _, t := range r.sides {
			e.m.chosen.WithLabelValues(r.name, t.b.cfg.Name).Set(b2f(t == next))
		}
		if next != nil {
			next.gen++
		}
		if !initial {
			e.switchCount++
			e.m.switches.WithLabelValues(r.name).Inc()
		}
		if old != nil {
			e.retire(old)
		}
		lvl := slog.LevelInfo
		if next == nil {
			lvl = slog.LevelWarn
		}
		e.log.Log(e.ctx, lvl, "edge route switched", "route", r.name, "from", sw.From, "to", sw.To, "reason", sw.Reason)
	}
	e.publish()
	for _, sw := range switches {
		if e.opts.OnSwitch != nil {
			e.opts.OnSwitch(sw)
		}
	}
}

func switchReason(r *route, old, next *target) string {
	switch {
	case next == nil:
		return fmt.Sprintf("no usable backend: %s: %s; %s: %s", r.sides[0].b.cfg.Name, r.sides[0].why, r.sides[1].b.cfg.Name, r.sides[1].why)
	case old == nil:
		n := next.b.node
		return fmt.Sprintf("%s usable: node %s is active at epoch %d", next.b.cfg.Name, n.name, n.snap.Epoch)
	default:
		n := next.b.node
		return fmt.Sprintf("%s: %s; %s: node %s is active at epoch %d", old.b.cfg.Name, old.why, next.b.cfg.Name, n.name, n.snap.Epoch)
	}
}

// retire ends what a route still holds on a target it no longer
// chooses. Idle HTTP connections go at once (no new request will use
// them); WebSocket and SIP TCP sessions go after Drain so clients
// reconnect through the Edge to the new side; UDP flows move at once.
// Plain HTTP requests in flight are let finish, and whatever connection
// they still hold is closed after a longer grace (a stream, a download).
// A later choice of the same target (gen) cancels the pending closes.
func (e *Edge) retire(t *target) {
	gen := t.gen
	stale := func() bool { return t.gen == gen && t.r.chosen != t }
	if t.tr != nil {
		t.closeIdle()
	}
	if t.r.sip != nil {
		t.r.sip.dropFlows(t)
	}
	if e.opts.Drain <= 0 {
		t.sessions.closeAll()
	} else {
		e.after(e.opts.Drain, func() {
			if stale() {
				t.sessions.closeAll()
			}
		})
	}
	if t.tr != nil {
		e.after(e.opts.Drain+e.longGrace, func() {
			if stale() {
				t.closeConns()
			}
		})
	}
}

func nameOf(t *target) string {
	if t == nil {
		return ""
	}
	return t.b.cfg.Name
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
