package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/xivo-resilience/resilience/internal/feed"
	"github.com/xivo-resilience/resilience/internal/store"
)

// Unit starts and stops one service; *service.Unit is one.
type Unit interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Service is a named Unit, in the node's start order.
type Service struct {
	Name string
	Unit Unit
}

// Peer is the other node of the pair.
type Peer interface {
	Name() string
	// Status asks the peer for its status, once.
	Status(ctx context.Context) (Snapshot, error)
}

// Store keeps the state and the audit log; *store.Store is one.
type Store interface {
	State() (store.State, bool, error)
	Write(st *store.State, entries ...store.Entry) ([]store.Entry, error)
}

// Hooks run around the services: after they are all up (register the SIP
// trunks) and before the first one stops (unregister them).
type Hooks interface {
	AfterStart(ctx context.Context)
	BeforeStop(ctx context.Context)
}

// Options are a Machine's dependencies.
type Options struct {
	Name string
	Kind string
	Role string
	Mode string
	// InitialStatus is taken when the store holds no state yet.
	InitialStatus Status
	Services      []Service
	// Peer is nil when the node has none.
	Peer Peer
	// PeerTimeout bounds the one-shot check before a Start (default 1s).
	PeerTimeout time.Duration
	Store       Store
	Hooks       Hooks
	// Follows names the XiVO a cc node follows: only its follower may then
	// start and stop services, and the epoch is the XiVO's.
	Follows string
	Metrics *Metrics
	Logger  *slog.Logger
}

// Request is an operator's Start or Stop.
type Request struct {
	Actor  string
	Remote string
	Reason string
	// Force starts even when the peer is Active: a takeover.
	Force bool
	// Epoch, when set, is the epoch an activation takes instead of one more
	// than the pair's highest: a cc node takes its XiVO's.
	Epoch uint64
	// Follower marks the requests of a cc node's follower.
	Follower bool
}

// SystemActor names the agent itself in the audit log.
const SystemActor = "system"

// Machine owns a node's status. Every change happens under mu and ends
// with publish, which encodes the snapshot once for all readers; only one
// transition runs at a time (busy), on a goroutine of the Machine's own so
// that a client that goes away does not cut a transition in half.
type Machine struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu                sync.Mutex
	busy              bool
	snap              Snapshot
	peerWarnAtStart   *Warning
	stayedInactive    *Warning
	supersededSince   time.Time
	peerUnreachableAt time.Time

	feed feed.Feed
}

// New builds a Machine from the store's last state. It starts nothing:
// call Recover to converge.
func New(opts Options) (*Machine, error) {
	if opts.Store == nil {
		return nil, errors.New("node: a store is required")
	}
	if opts.PeerTimeout <= 0 {
		opts.PeerTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.InitialStatus == "" {
		opts.InitialStatus = Inactive
	}
	st, _, err := opts.Store.State()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Machine{
		opts:   opts,
		log:    opts.Logger,
		ctx:    ctx,
		cancel: cancel,
	}
	now := time.Now().UTC()
	m.snap = Snapshot{
		Name:    opts.Name,
		Kind:    opts.Kind,
		Role:    opts.Role,
		Mode:    opts.Mode,
		Status:  Inactive,
		Desired: Status(st.Desired),
		Epoch:   st.Epoch,
		Since:   now,
	}
	if m.snap.Desired == "" {
		m.snap.Desired = Inactive
	}
	for _, s := range opts.Services {
		m.snap.Services = append(m.snap.Services, ServiceStatus{Name: s.Name, State: ServiceStopped, Since: now})
	}
	if opts.Peer != nil {
		m.snap.Peer = &PeerView{Name: opts.Peer.Name()}
	}
	m.mu.Lock()
	m.publishLocked()
	m.mu.Unlock()
	return m, nil
}

// Snapshot returns a copy of the current status.
func (m *Machine) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.copyLocked()
}

// Encoded returns the current status as JSON, encoded once per change.
func (m *Machine) Encoded() []byte { return m.feed.Encoded() }

// Subscribe returns a channel that receives the encoded status at every
// change, starting with the current one (see package feed for a slow
// reader). cancel releases the subscription.
func (m *Machine) Subscribe() (events <-chan []byte, cancel func()) { return m.feed.Subscribe() }

// Close cancels a running transition, waits for the Machine's goroutines
// and leaves the services as they are.
func (m *Machine) Close(ctx context.Context) error {
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StartServices activates the node and returns once the transition ended
// (or ctx ended: the transition goes on).
func (m *Machine) StartServices(ctx context.Context, req Request) (Snapshot, error) {
	if err := m.following(req, "start"); err != nil {
		return m.Snapshot(), err
	}
	m.mu.Lock()
	if m.busy {
		m.auditLocked(req, "start", "refused", ErrTransitionInProgress.Error())
		m.mu.Unlock()
		return m.Snapshot(), ErrTransitionInProgress
	}
	if m.snap.Status == Active && m.snap.Desired == Active {
		if req.Epoch > 0 && req.Epoch != m.snap.Epoch {
			// A cc node whose XiVO went through Stop and Start while the
			// stream coalesced them: serve on, under the new epoch.
			m.snap.Epoch = req.Epoch
			err := m.persistLocked(m.entryLocked(req, "start", "epoch", fmt.Sprintf("already active: epoch now %d", req.Epoch)))
			m.publishLocked()
			m.mu.Unlock()
			return m.Snapshot(), err
		}
		m.auditLocked(req, "start", "noop", "already active")
		m.mu.Unlock()
		return m.Snapshot(), nil
	}
	m.busy = true
	m.mu.Unlock()

	peer, peerErr := m.checkPeer(ctx)
	if peerErr == nil && serving(peer) && !req.Force {
		err := &PeerActiveError{Peer: peer.Name, Status: peer.Status, Epoch: peer.Epoch}
		m.mu.Lock()
		m.busy = false
		m.auditLocked(req, "start", "refused", err.Error())
		m.mu.Unlock()
		return m.Snapshot(), err
	}
	return m.run(ctx, func() error { return m.activate(req, peer, peerErr) })
}

// StopServices deactivates the node and returns once the transition ended
// (or ctx ended: the transition goes on).
func (m *Machine) StopServices(ctx context.Context, req Request) (Snapshot, error) {
	if err := m.following(req, "stop"); err != nil {
		return m.Snapshot(), err
	}
	m.mu.Lock()
	if m.busy {
		m.auditLocked(req, "stop", "refused", ErrTransitionInProgress.Error())
		m.mu.Unlock()
		return m.Snapshot(), ErrTransitionInProgress
	}
	if m.snap.Status == Inactive && m.snap.Desired == Inactive {
		m.auditLocked(req, "stop", "noop", "already inactive")
		m.mu.Unlock()
		return m.Snapshot(), nil
	}
	m.busy = true
	m.mu.Unlock()
	return m.run(ctx, func() error { return m.deactivate(req) })
}

// following refuses an operator's request on a node that follows its XiVO.
func (m *Machine) following(req Request, action string) error {
	if m.opts.Follows == "" || req.Follower {
		return nil
	}
	err := &FollowingError{Node: m.opts.Name, XiVO: m.opts.Follows}
	m.mu.Lock()
	m.auditLocked(req, action, "refused", err.Error())
	m.mu.Unlock()
	return err
}

// run runs a transition on the Machine's goroutine; busy is already set.
func (m *Machine) run(ctx context.Context, transition func() error) (Snapshot, error) {
	done := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := transition()
		m.mu.Lock()
		m.busy = false
		m.mu.Unlock()
		done <- err
	}()
	select {
	case err := <-done:
		return m.Snapshot(), err
	case <-ctx.Done():
		return m.Snapshot(), ctx.Err()
	}
}

// checkPeer asks the peer for its status with a short timeout.
func (m *Machine) checkPeer(ctx context.Context) (Snapshot, error) {
	if m.opts.Peer == nil {
		return Snapshot{}, errNoPeer
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.PeerTimeout)
	defer cancel()
	s, err := m.opts.Peer.Status(ctx)
	if s.Name == "" {
		s.Name = m.opts.Peer.Name()
	}
	m.ObservePeer(s, err)
	return s, err
}

var errNoPeer = errors.New("no peer configured")

// activate is the Start transition: epoch, state on disk, then services in
// order, then hooks.
func (m *Machine) activate(req Request, peer Snapshot, peerErr error) error {
	begun := time.Now()
	m.mu.Lock()
	peerEpoch := peer.Epoch
	if peerErr != nil && m.snap.Peer != nil {
		peerEpoch = max(peerEpoch, m.snap.Peer.Epoch)
	}
	if req.Epoch > 0 {
		m.snap.Epoch = req.Epoch
	} else {
		m.snap.Epoch = max(m.snap.Epoch, peerEpoch) + 1
	}
	m.peerWarnAtStart = nil
	m.stayedInactive = nil
	m.snap.Takeover = nil
	msg := ""
	switch {
	case peerErr == nil && serving(peer):
		m.snap.Takeover = &Takeover{From: peer.Name, Epoch: m.snap.Epoch, PeerEpoch: peer.Epoch, At: begun.UTC()}
		msg = fmt.Sprintf("takeover: %s was %s at epoch %d", peer.Name, peer.Status, peer.Epoch)
	case peerErr != nil && !errors.Is(peerErr, errNoPeer):
		w := Warning{Code: WarnPeerUnreachableAtStart, Since: begun.UTC(),
			Message: fmt.Sprintf("peer %s was unreachable at start (%v): make sure it is stopped", m.peerName(), peerErr)}
		m.peerWarnAtStart = &w
		msg = w.Message
	case peerErr == nil:
		msg = fmt.Sprintf("peer %s is %s at epoch %d", peer.Name, peer.Status, peer.Epoch)
	}
	if req.Follower {
		msg = "" // the reason says it all
	}
	m.setStatusLocked(Activating, Active, req, "start")
	if err := m.persistLocked(m.entryLocked(req, "start", "begun", msg)); err != nil {
		return m.failLocked(req, "start", "", fmt.Errorf("write state: %w", err), begun)
	}
	m.mu.Unlock()

	for i, s := range m.opts.Services {
		m.setService(i, ServiceStarting, "")
		if err := s.Unit.Start(m.ctx); err != nil {
			m.stopFailed(i, err)
			m.settle(i) // the ones before it stay running: confirm them
			m.mu.Lock()
			return m.failLocked(req, "start", s.Name, err, begun)
		}
		m.setService(i, ServiceRunning, "")
	}
	if name, err := m.settle(len(m.opts.Services)); err != nil {
		m.mu.Lock()
		return m.failLocked(req, "start", name, err, begun)
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.AfterStart(m.ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.finishLocked(req, "start", Active, begun)
}

// stopFailed stops a service that would not start, so that a hung process
// does not linger half-started, and marks it failed.
func (m *Machine) stopFailed(i int, cause error) {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 30*time.Second)
	_ = m.opts.Services[i].Unit.Stop(stopCtx)
	cancel()
	m.setService(i, ServiceFailed, cause.Error())
}

// settler is a Unit whose Start returns before it knows that the service
// survived its first moments (*service.Unit with an exec backend).
type settler interface {
	Settle(ctx context.Context) error
}

// settle confirms the first n services once they are all started, so that
// their probations overlap instead of adding up. A service that died in
// its probation is failed; the first one is returned.
func (m *Machine) settle(n int) (failed string, err error) {
	for i, s := range m.opts.Services[:n] {
		st, ok := s.Unit.(settler)
		if !ok {
			continue
		}
		if serr := st.Settle(m.ctx); serr != nil {
			m.stopFailed(i, serr)
			if err == nil {
				failed, err = s.Name, serr
			}
		}
	}
	return failed, err
}

// deactivate is the Stop transition: state on disk, hooks, then services
// in reverse order. A service that fails to stop does not keep the others
// running.
func (m *Machine) deactivate(req Request) error {
	begun := time.Now()
	m.mu.Lock()
	m.setStatusLocked(Deactivating, Inactive, req, "stop")
	if err := m.persistLocked(m.entryLocked(req, "stop", "begun", "")); err != nil {
		return m.failLocked(req, "stop", "", fmt.Errorf("write state: %w", err), begun)
	}
	m.mu.Unlock()

	if m.opts.Hooks != nil {
		m.opts.Hooks.BeforeStop(m.ctx)
	}
	var failedName string
	var failedErr error
	for i := len(m.opts.Services) - 1; i >= 0; i-- {
		s := m.opts.Services[i]
		m.setService(i, ServiceStopping, "")
		if err := s.Unit.Stop(m.ctx); err != nil {
			m.setService(i, ServiceFailed, err.Error())
			if failedErr == nil {
				failedName, failedErr = s.Name, err
			}
			continue
		}
		m.setService(i, ServiceStopped, "")
	}
	m.mu.Lock()
	if failedErr != nil {
		return m.failLocked(req, "stop", failedName, failedErr, begun)
	}
	defer m.mu.Unlock()
	m.snap.Takeover = nil
	m.peerWarnAtStart = nil
	return m.finishLocked(req, "stop", Inactive, begun)
}

// setStatusLocked enters a transition status.
func (m *Machine) setStatusLocked(s, desired Status, req Request, action string) {
	now := time.Now().UTC()
	m.snap.Status = s
	m.snap.Desired = desired
	m.snap.Since = now
	m.snap.Error = ""
	m.snap.Transition = &Transition{Action: action, Actor: actorOf(req), StartedAt: now}
	m.log.Info("transition", "action", action, "to", s, "epoch", m.snap.Epoch, "actor", actorOf(req), "reason", req.Reason)
	m.publishLocked()
}

// finishLocked ends a transition in status s and unlocks nothing.
func (m *Machine) finishLocked(req Request, action string, s Status, begun time.Time) error {
	m.snap.Status = s
	m.snap.Since = time.Now().UTC()
	m.snap.Transition = nil
	m.snap.Error = ""
	e := m.entryLocked(req, action, "ok", "")
	e.Services = m.serviceResultsLocked()
	err := m.persistLocked(e)
	m.opts.Metrics.transition(action, "ok", time.Since(begun))
	m.log.Info("transition done", "action", action, "status", s, "epoch", m.snap.Epoch, "actor", actorOf(req), "took", time.Since(begun))
	m.publishLocked()
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// failLocked ends a transition in the failed status, naming the service,
// and unlocks mu.
func (m *Machine) failLocked(req Request, action, service string, cause error, begun time.Time) error {
	defer m.mu.Unlock()
	m.snap.Status = Failed
	m.snap.Since = time.Now().UTC()
	m.snap.Transition = nil
	if service != "" {
		m.snap.Error = service + ": " + cause.Error()
	} else {
		m.snap.Error = cause.Error()
	}
	e := m.entryLocked(req, action, "failed", m.snap.Error)
	e.Services = m.serviceResultsLocked()
	if err := m.persistLocked(e); err != nil {
		m.log.Error("write state", "err", err)
	}
	m.opts.Metrics.transition(action, "failed", time.Since(begun))
	m.log.Error("transition failed", "action", action, "service", service, "err", cause, "epoch", m.snap.Epoch, "actor", actorOf(req))
	m.publishLocked()
	return &FailedError{Action: action, Service: service, Err: cause.Error()}
}

func (m *Machine) setService(i int, st ServiceState, errText string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.snap.Services[i]
	s.State = st
	s.Error = errText
	s.Since = time.Now().UTC()
	m.publishLocked()
}

// ServiceEvent records what a supervised service did by itself: it died
// and is being restarted, or it is back.
func (m *Machine) ServiceEvent(name, kind string, cause error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.snap.Services, func(s ServiceStatus) bool { return s.Name == name })
	if i < 0 {
		return
	}
	s := &m.snap.Services[i]
	msg := fmt.Sprintf("service %s %s", name, kind)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	switch kind {
	case "exited":
		s.State, s.Error = ServiceRestarting, cause.Error()
		s.Restarts++
		m.opts.Metrics.restart(name)
	case "restarted":
		s.State, s.Error = ServiceRunning, ""
	default:
		s.State = ServiceFailed
		if cause != nil {
			s.Error = cause.Error()
		}
	}
	s.Since = time.Now().UTC()
	m.log.Warn("service event", "service", name, "event", kind, "err", cause)
	if _, err := m.opts.Store.Write(nil, m.entryLocked(Request{Actor: SystemActor}, "service_"+kind, "recorded", msg)); err != nil {
		m.log.Error("write audit", "err", err)
	}
	m.publishLocked()
}

// ObserveRegistrations records the trunk registrations to the MDS; a
// change of state is written to the audit log.
func (m *Machine) ObserveRegistrations(regs []Registration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := make(map[string]string, len(m.snap.MDS))
	for _, r := range m.snap.MDS {
		old[r.Name] = r.State
	}
	var entries []store.Entry
	for _, r := range regs {
		was := old[r.Name]
		if was == r.State || r.State == "registering" || r.State == "unregistering" || was == "" && r.State == "unregistered" {
			continue
		}
		msg := fmt.Sprintf("trunk to %s %s", r.Name, r.State)
		if r.LastResponse != "" {
			msg += " (" + r.LastResponse + ")"
		}
		if r.LastError != "" {
			msg += ": " + r.LastError
		}
		entries = append(entries, m.entryLocked(Request{Actor: SystemActor}, "trunk", r.State, msg))
	}
	if len(entries) > 0 {
		if _, err := m.opts.Store.Write(nil, entries...); err != nil {
			m.log.Error("write audit", "err", err)
		}
	}
	m.snap.MDS = regs
	m.opts.Metrics.registrations(regs)
	m.publishLocked()
}

// ObserveFollowed records what a cc node knows of its XiVO.
func (m *Machine) ObserveFollowed(f Followed) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.Followed = &f
	m.publishLocked()
}

// ObservePeer records the peer's status, or why it could not be read.
func (m *Machine) ObservePeer(s Snapshot, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap.Peer == nil {
		return
	}
	p := m.snap.Peer
	if err != nil {
		if p.Error == "" {
			m.peerUnreachableAt = time.Now().UTC()
		}
		p.Error = err.Error()
	} else {
		next := PeerView{Name: p.Name, Status: s.Status, Desired: s.Desired, Epoch: s.Epoch, Takeover: s.Takeover, ObservedAt: time.Now().UTC()}
		same := p.Error == "" && !p.ObservedAt.IsZero() && p.Status == next.Status && p.Desired == next.Desired && p.Epoch == next.Epoch &&
			(p.Takeover == nil) == (next.Takeover == nil) && (p.Takeover == nil || *p.Takeover == *next.Takeover)
		if same && next.ObservedAt.Sub(p.ObservedAt) < 10*time.Second {
			// Only the peer's revision moved (it observed us, say):
			// publishing each time would bounce events between the two
			// forever. The time it was seen is refreshed now and then.
			return
		}
		*p = next
	}
	m.publishLocked()
}

func (m *Machine) peerName() string {
	if m.opts.Peer == nil {
		return ""
	}
	return m.opts.Peer.Name()
}

// warningsLocked derives the warnings from the status and the peer view.
func (m *Machine) warningsLocked() []Warning {
	ws := []Warning{}
	if m.stayedInactive != nil {
		ws = append(ws, *m.stayedInactive)
	}
	if m.peerWarnAtStart != nil {
		ws = append(ws, *m.peerWarnAtStart)
	}
	if f := m.snap.Followed; f != nil && f.Error != "" {
		ws = append(ws, Warning{Code: WarnXiVOUnreachable, Since: f.UnreachableSince,
			Message: fmt.Sprintf("%s unreachable since %s: keeping services as they are (%s)",
				f.Name, f.UnreachableSince.Local().Format("15:04:05"), f.Error)})
	}
	p := m.snap.Peer
	if p == nil {
		return ws
	}
	if p.Error != "" {
		ws = append(ws, Warning{Code: WarnPeerUnreachable, Since: m.peerUnreachableAt,
			Message: fmt.Sprintf("peer %s unreachable: %s", p.Name, p.Error)})
	}
	selfUp := serving(m.snap)
	peerUp := p.Error == "" && serving(Snapshot{Status: p.Status, Desired: p.Desired})
	if !selfUp || !peerUp {
		m.supersededSince = time.Time{}
		return ws
	}
	if m.supersededSince.IsZero() {
		m.supersededSince = time.Now().UTC()
	}
	since := m.supersededSince
	switch {
	case p.Epoch > m.snap.Epoch && p.Takeover != nil && p.Takeover.From == m.snap.Name:
		ws = append(ws, Warning{Code: WarnSuperseded, Since: since,
			Message: fmt.Sprintf("%s took over at epoch %d: stop services here", p.Name, p.Epoch)})
	case p.Epoch < m.snap.Epoch && m.snap.Takeover != nil:
		ws = append(ws, Warning{Code: WarnPeerStillActive, Since: since,
			Message: fmt.Sprintf("%s is still active (epoch %d): stop services there to finish the takeover", p.Name, p.Epoch)})
	default:
		newer := m.snap.Name
		if p.Epoch > m.snap.Epoch {
			newer = p.Name
		}
		ws = append(ws, Warning{Code: WarnBothActive, Since: since,
			Message: fmt.Sprintf("both %s (epoch %d) and %s (epoch %d) are active with no takeover between them: dependents follow %s; stop services on the other",
				m.snap.Name, m.snap.Epoch, p.Name, p.Epoch, newer)})
	}
	return ws
}

// publishLocked encodes the snapshot once and hands it to every subscriber.
func (m *Machine) publishLocked() {
	m.snap.Revision++
	m.snap.Warnings = m.warningsLocked()
	b, err := json.Marshal(m.snap)
	if err != nil {
		panic(err) // a Snapshot always encodes
	}
	m.feed.Publish(b)
	m.opts.Metrics.observe(&m.snap)
}

func (m *Machine) copyLocked() Snapshot {
	s := m.snap
	s.Services = slices.Clone(m.snap.Services)
	s.Warnings = slices.Clone(m.snap.Warnings)
	if m.snap.Peer != nil {
		p := *m.snap.Peer
		s.Peer = &p
	}
	if m.snap.Followed != nil {
		f := *m.snap.Followed
		s.Followed = &f
	}
	s.MDS = slices.Clone(m.snap.MDS)
	return s
}

func (m *Machine) persistLocked(entries ...store.Entry) error {
	st := store.State{
		Desired: string(m.snap.Desired),
		Status:  string(m.snap.Status),
		Epoch:   m.snap.Epoch,
		Since:   m.snap.Since,
	}
	if m.stayedInactive != nil {
		st.Note = m.stayedInactive.Message
	}
	_, err := m.opts.Store.Write(&st, entries...)
	return err
}

func (m *Machine) entryLocked(req Request, action, result, msg string) store.Entry {
	return store.Entry{
		Actor:   actorOf(req),
		Remote:  req.Remote,
		Action:  action,
		Reason:  req.Reason,
		Epoch:   m.snap.Epoch,
		Result:  result,
		Message: msg,
	}
}

func (m *Machine) auditLocked(req Request, action, result, msg string) {
	if req.Force {
		action += " (force)"
	}
	if _, err := m.opts.Store.Write(nil, m.entryLocked(req, action, result, msg)); err != nil {
		m.log.Error("write audit", "err", err)
	}
}

func (m *Machine) serviceResultsLocked() []store.ServiceResult {
	out := make([]store.ServiceResult, len(m.snap.Services))
	for i, s := range m.snap.Services {
		out[i] = store.ServiceResult{Name: s.Name, State: string(s.State), Error: s.Error}
	}
	return out
}

// serving tells whether a node runs (or is bringing up) its services: a
// failed Start counts, as some of its services may run.
func serving(s Snapshot) bool {
	return s.Status == Active || s.Status == Activating || (s.Status == Failed && s.Desired == Active)
}

func actorOf(req Request) string {
	if req.Actor == "" {
		return SystemActor
	}
	return req.Actor
}
