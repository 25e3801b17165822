package web

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// liveView is the part of the page that follows the node: status, actions,
// progress, warnings, services, peer and the latest audit entries. The
// page's script fetches it again at every event.
type liveView struct {
	Snap  node.Snapshot
	Admin bool
	// Busy is set while a transition runs: both buttons are disabled.
	Busy     bool
	CanStart bool
	CanStop  bool
	// Progress is set while a transition runs.
	Progress *progressView
	Recent   []store.Entry
	// RecentErr is set when the audit log could not be read.
	RecentErr string
}

// progressView is a transition under way, service by service, in the
// order the transition handles them.
type progressView struct {
	Verb      string
	Actor     string
	StartedAt time.Time
	Done      int
	Total     int
	Current   string
	Steps     []stepView
}

type stepView struct {
	Name string
	// Phase is done, current, failed or pending.
	Phase string
	State node.ServiceState
}

// recentEntries is how many audit entries the main page shows.
const recentEntries = 8

func (s *Server) liveView(v *visit) liveView {
	snap := s.opts.Machine.Snapshot()
	lv := liveView{Snap: snap, Admin: v.sess.admin(), Busy: snap.Transition != nil}
	lv.CanStart = lv.Admin && !lv.Busy && !(snap.Status == node.Active && snap.Desired == node.Active)
	lv.CanStop = lv.Admin && !lv.Busy && !(snap.Status == node.Inactive && snap.Desired == node.Inactive)
	if snap.Transition != nil {
		lv.Progress = progressOf(snap)
	}
	recent, err := s.opts.History.History(recentEntries, 0)
	if err != nil {
		s.log.Error("read history", "err", err)
		lv.RecentErr = "The audit log cannot be read: " + err.Error()
	}
	lv.Recent = recent
	return lv
}

func progressOf(snap node.Snapshot) *progressView {
	t := snap.Transition
	p := &progressView{Actor: t.Actor, StartedAt: t.StartedAt, Total: len(snap.Services)}
	order := slices.Clone(snap.Services)
	doneState := node.ServiceRunning
	switch {
	case t.Action == "stop" || snap.Status == node.Deactivating:
		p.Verb = "Stopping services"
		doneState = node.ServiceStopped
		slices.Reverse(order)
	case t.Action == "recover" && snap.Status == node.Inactive:
		p.Verb = "Recovering after a restart"
	default:
		p.Verb = "Starting services"
		if t.Action == "recover" {
			p.Verb = "Recovering after a restart: starting services"
		}
	}
	for _, svc := range order {
		st := stepView{Name: svc.Name, State: svc.State, Phase: "pending"}
		switch svc.State {
		case doneState:
			st.Phase = "done"
			p.Done++
		case node.ServiceStarting, node.ServiceStopping:
			st.Phase = "current"
			p.Current = svc.Name
		case node.ServiceFailed:
			st.Phase = "failed"
		}
		p.Steps = append(p.Steps, st)
	}
	return p
}

// confirmView is the confirmation of a Start or a Stop: what will happen,
// what the peer is doing, an optional reason, and the force choice when a
// Start would be a takeover.
type confirmView struct {
	// Action is start or stop.
	Action string
	Snap   node.Snapshot
	// Services are named in the order the action handles them.
	Services []string
	// Check is the live check of the peer (Start only).
	Check *peerCheck
	// NextEpoch is the epoch a Start would take.
	NextEpoch uint64
	// Takeover: the peer serves, so a Start must be forced.
	Takeover bool
	// Nothing says why the action would change nothing.
	Nothing string
	// Alone: after this Stop no node of the pair serves.
	Alone bool
	Busy  bool
	CSRF  string
	// Partial renders the form for the page's dialog.
	Partial bool
}

// peerCheck is what the one-shot check of the peer found.
type peerCheck struct {
	Name      string
	NoPeer    bool
	Reachable bool
	Status    node.Status
	Epoch     uint64
	Serving   bool
	Error     string
	Takeover  *node.Takeover
	CheckedAt time.Time
}

func (s *Server) confirmView(ctx context.Context, v *visit, action string, partial bool) confirmView {
	snap := s.opts.Machine.Snapshot()
	cv := confirmView{Action: action, Snap: snap, Busy: snap.Transition != nil, CSRF: v.sess.csrf, Partial: partial}
	for _, svc := range snap.Services {
		cv.Services = append(cv.Services, svc.Name)
	}
	switch action {
	case "start":
		if snap.Status == node.Active && snap.Desired == node.Active {
			cv.Nothing = snap.Name + " is already active: Start services changes nothing."
		}
		cv.Check = s.checkPeer(ctx, snap)
		peerEpoch := cv.Check.Epoch
		if !cv.Check.Reachable && snap.Peer != nil {
			peerEpoch = max(peerEpoch, snap.Peer.Epoch)
		}
		cv.NextEpoch = max(snap.Epoch, peerEpoch) + 1
		cv.Takeover = cv.Check.Serving
	case "stop":
		slices.Reverse(cv.Services)
		if snap.Status == node.Inactive && snap.Desired == node.Inactive {
			cv.Nothing = snap.Name + " is already inactive: Stop services changes nothing."
		}
		p := snap.Peer
		cv.Alone = p != nil && (p.Error != "" || !(node.Snapshot{Status: p.Status, Desired: p.Desired}).Serving())
	}
	return cv
}

func (s *Server) checkPeer(ctx context.Context, self node.Snapshot) *peerCheck {
	if self.Peer == nil {
		return &peerCheck{NoPeer: true}
	}
	peer, err := s.opts.Machine.CheckPeer(ctx)
	pc := &peerCheck{Name: self.Peer.Name, CheckedAt: s.now()}
	switch {
	case errors.Is(err, node.ErrNoPeer):
		pc.NoPeer = true
	case err != nil:
		pc.Error = err.Error()
	default:
		pc.Reachable = true
		pc.Status, pc.Epoch, pc.Takeover = peer.Status, peer.Epoch, peer.Takeover
		pc.Serving = peer.Serving()
	}
	return pc
}
