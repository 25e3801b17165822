// Package cc makes a contact-center node follow its XiVO, as the seed's CC
// deployment says: the CC starts its services when its XiVO goes Active
// and stops them when it goes Inactive. The XiVO's event stream brings
// changes within milliseconds; while the stream is down the XiVO's status
// is polled. When the XiVO cannot be reached at all, nothing changes: a
// network blip must not stop a contact center.
package cc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

// Machine is the cc node's own status machine; *node.Machine is one.
type Machine interface {
	Snapshot() node.Snapshot
	Subscribe() (<-chan []byte, func())
	StartServices(ctx context.Context, req node.Request) (node.Snapshot, error)
	StopServices(ctx context.Context, req node.Request) (node.Snapshot, error)
	ObserveFollowed(f node.Followed)
}

// XiVO is the followed XiVO's API; *apiclient.Client is one.
type XiVO interface {
	Status(ctx context.Context) (node.Snapshot, error)
	Events(ctx context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error
}

// Options are a Follower's dependencies.
type Options struct {
	// Name is the followed XiVO's name.
	Name    string
	XiVO    XiVO
	Machine Machine
	// PollInterval paces polls while the stream is down (default 1s).
	PollInterval time.Duration
	// Timeout bounds one status request (default 1s).
	Timeout time.Duration
	// Idle is how long a silent stream is trusted (default 6s: three of
	// the XiVO's heartbeats).
	Idle time.Duration
	// RetryMax caps the pause between retries of a failed transition
	// (default 30s).
	RetryMax time.Duration
	Logger   *slog.Logger
}

// Follower keeps the cc node's status in step with its XiVO's.
type Follower struct {
	opts Options
	log  *slog.Logger

	kick chan struct{}

	// pub orders the views handed to the machine as they were made: the
	// stream and the poll observe from two goroutines, and a poll's view
	// handed over after the stream's would leave the machine saying
	// "via poll" while the stream is up.
	pub      sync.Mutex
	mu       sync.Mutex
	xivo     node.Snapshot // last status read
	known    bool          // xivo holds a status read while reachable
	streamUp bool
	view     node.Followed

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the options and returns a Follower; it starts nothing.
func New(opts Options) (*Follower, error) {
	if opts.XiVO == nil || opts.Machine == nil || opts.Name == "" {
		return nil, errors.New("cc: the XiVO, its name and the machine are required")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Idle <= 0 {
		opts.Idle = 6 * time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Follower{
		opts: opts,
		log:  opts.Logger,
		kick: make(chan struct{}, 1),
		view: node.Followed{Name: opts.Name},
	}, nil
}

// Start follows the XiVO until Stop: its event stream, the poll fallback,
// and the loop that starts and stops the services.
func (f *Follower) Start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.opts.Machine.ObserveFollowed(f.view)
	for _, loop := range []func(context.Context){f.stream, f.poll, f.reconcile} {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			loop(ctx)
		}()
	}
}

// Stop ends following and waits for a transition under way to return
// (the machine's own Close cuts it short if need be).
func (f *Follower) Stop() {
	if f.cancel != nil {
		f.cancel()
		f.wg.Wait()
	}
}

// stream follows the XiVO's events, reconnecting with backoff.
func (f *Follower) stream(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		begun := time.Now()
		err := f.opts.XiVO.Events(ctx, f.opts.Idle,
			func(s node.Snapshot) { f.observe(s, "events") },
			func() { f.beat() })
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		f.streamUp = false
		f.mu.Unlock()
		f.log.Warn("xivo event stream down", "xivo", f.opts.Name, "err", err)
		if time.Since(begun) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// poll reads the XiVO's status while the stream is down.
func (f *Follower) poll(ctx context.Context) {
	t := time.NewTicker(f.opts.PollInterval)
	defer t.Stop()
	for {
		f.mu.Lock()
		up := f.streamUp
		f.mu.Unlock()
		if !up {
			rctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
			s, err := f.opts.XiVO.Status(rctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				f.unreachable(err)
			} else {
				f.observe(s, "poll")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe records a status read from the XiVO and wakes the reconciler.
func (f *Follower) observe(s node.Snapshot, via string) {
	f.pub.Lock()
	defer f.pub.Unlock()
	now := time.Now().UTC()
	f.mu.Lock()
	if via == "events" {
		f.streamUp = true
	} else if f.streamUp {
		f.mu.Unlock()
		return // a poll that raced the stream's comeback says nothing newer
	}
	f.xivo, f.known = s, true
	f.view = node.Followed{Name: f.opts.Name, Status: s.Status, Desired: s.Desired, Epoch: s.Epoch, ObservedAt: now, Via: via}
	view := f.view
	f.mu.Unlock()
	f.opts.Machine.ObserveFollowed(view)
	f.wake()
}

// beat refreshes how fresh the knowledge is, without a new status.
func (f *Follower) beat() {
	f.pub.Lock()
	defer f.pub.Unlock()
	f.mu.Lock()
	if !f.streamUp || !f.known {
		f.mu.Unlock()
		return
	}
	f.view.ObservedAt = time.Now().UTC()
	view := f.view
	f.mu.Unlock()
	f.opts.Machine.ObserveFollowed(view)
}

// unreachable records that neither stream nor poll reach the XiVO. What
// was known stays known, but is no longer acted on.
func (f *Follower) unreachable(err error) {
	f.pub.Lock()
	defer f.pub.Unlock()
	f.mu.Lock()
	first := f.view.Error == ""
	f.known = false
	f.view.Error = err.Error()
	f.view.Via = ""
	if first {
		f.view.UnreachableSince = time.Now().UTC()
		f.log.Warn("xivo unreachable: keeping services as they are", "xivo", f.opts.Name, "err", err)
	}
	view := f.view
	f.mu.Unlock()
	f.opts.Machine.ObserveFollowed(view)
}

func (f *Follower) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// reconcile starts or stops the services whenever the XiVO's status and
// the node's disagree: after every observation, every change of the
// node's own status (a transition that ended), and when a retry is due.
func (f *Follower) reconcile(ctx context.Context) {
	own, cancel := f.opts.Machine.Subscribe()
	defer cancel()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		case <-own:
		case <-retry.C:
		}
		failed, done := f.step(ctx)
		switch {
		case done:
			backoff = time.Second
		case failed:
			retry.Reset(backoff)
			backoff = min(2*backoff, f.opts.RetryMax)
		}
	}
}

// step runs the one transition, if any, that brings the node in line
// with its XiVO. failed means it ended in the failed status and is worth
// retrying later; done means nothing is left to do.
func (f *Follower) step(ctx context.Context) (failed, done bool) {
	f.mu.Lock()
	x, known := f.xivo, f.known
	f.mu.Unlock()
	if !known {
		return false, false // unknown or unreachable: change nothing
	}
	var want node.Status
	switch x.Status {
	case node.Active:
		want = node.Active
	case node.Inactive:
		want = node.Inactive
	default:
		return false, false // wait for the XiVO's transition to end
	}
	s := f.opts.Machine.Snapshot()
	if s.Transition != nil {
		return false, false // the end of it wakes us
	}
	if s.Status == want && s.Desired == want && (want == node.Inactive || s.Epoch == x.Epoch) {
		return false, true
	}
	req := node.Request{
		Actor:    f.opts.Name,
		Reason:   fmt.Sprintf("%s is %s at epoch %d", x.Name, x.Status, x.Epoch),
		Epoch:    x.Epoch,
		Follower: true,
	}
	var err error
	if want == node.Active {
		// Also when Active already under an older epoch of the XiVO: the
		// Start then adopts the new epoch without touching the services.
		_, err = f.opts.Machine.StartServices(ctx, req)
	} else {
		_, err = f.opts.Machine.StopServices(ctx, req)
	}
	switch {
	case err == nil:
		return false, false // the node's change wakes us to check again
	case errors.Is(err, node.ErrTransitionInProgress), ctx.Err() != nil:
		return false, false
	case errors.Is(err, node.ErrTransitionFailed):
		f.log.Warn("following: transition failed, will retry", "xivo", f.opts.Name, "err", err)
		return true, false
	default:
		f.log.Error("following", "xivo", f.opts.Name, "err", err)
		return true, false
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
