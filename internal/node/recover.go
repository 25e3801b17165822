package node

import (
	"fmt"
	"time"
)

// Recover converges the node to its desired status after the agent
// (re)started, in the background: services are started again if the node
// should be Active, stopped if not. A node that should be Active stays
// Inactive, and says why, when its peer serves with a higher epoch: the
// peer took over while this node was down. Requests get
// ErrTransitionInProgress until it is done.
func (m *Machine) Recover() {
	m.mu.Lock()
	if m.busy {
		m.mu.Unlock()
		return
	}
	m.busy = true
	// Shown until the start or stop that follows ends it.
	m.snap.Transition = &Transition{Action: "recover", Actor: SystemActor, StartedAt: time.Now().UTC()}
	m.publishLocked()
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.recover()
		m.mu.Lock()
		m.busy = false
		m.mu.Unlock()
	}()
}

func (m *Machine) recover() {
	st, ok, err := m.opts.Store.State()
	if err != nil {
		m.log.Error("recover: read state", "err", err)
		m.mu.Lock()
		m.snap.Transition = nil
		m.snap.Status, m.snap.Error = Failed, "recover: "+err.Error()
		m.publishLocked()
		m.mu.Unlock()
		return
	}
	desired := Status(st.Desired)
	var msg string
	switch {
	case !ok:
		desired = m.opts.InitialStatus
		msg = fmt.Sprintf("first start: initial status %s", desired)
	case st.Status == string(Activating) || st.Status == string(Deactivating):
		msg = fmt.Sprintf("agent restarted while %s at epoch %d: converging to %s", st.Status, st.Epoch, desired)
	default:
		msg = fmt.Sprintf("agent restarted (was %s at epoch %d): converging to %s", st.Status, st.Epoch, desired)
	}
	req := Request{Actor: SystemActor, Reason: "recover", Follower: true}
	if m.opts.Follows != "" {
		req.Epoch = st.Epoch // the XiVO's, until the follower learns a newer one
	}
	m.mu.Lock()
	m.auditLocked(req, "recover", "begun", msg)
	m.mu.Unlock()
	m.log.Info("recover", "msg", msg)

	if desired != Active {
		_ = m.deactivate(req)
		return
	}
	peer, peerErr := m.checkPeer(m.ctx)
	if peerErr == nil && serving(peer) && (!ok || peer.Epoch > st.Epoch) {
		m.stayInactive(req, peer)
		return
	}
	_ = m.activate(req, peer, peerErr)
}

// stayInactive records that the peer took over while this node was down,
// then makes sure this node's services are stopped.
func (m *Machine) stayInactive(req Request, peer Snapshot) {
	m.mu.Lock()
	w := Warning{Code: WarnStayedInactive, Since: time.Now().UTC(),
		Message: fmt.Sprintf("stayed inactive: %s took over at epoch %d while this node was down (own epoch %d); start services here only after stopping them there",
			peer.Name, peer.Epoch, m.snap.Epoch)}
	m.stayedInactive = &w
	m.auditLocked(req, "recover", "stayed_inactive", w.Message)
	m.opts.Metrics.stayedInactive()
	m.log.Warn("stayed inactive", "peer", peer.Name, "peer_epoch", peer.Epoch, "epoch", m.snap.Epoch)
	m.mu.Unlock()
	_ = m.deactivate(req)
}
