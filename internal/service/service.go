// Package service starts and stops one service of a node: a backend (a
// supervised process, a command for a unit managed elsewhere, a container)
// and an optional readiness check, each bounded by a timeout. The order of
// services and what a failure means for the node are the node's business.
package service

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Defaults used when a Unit leaves a duration at zero.
const (
	DefaultReadyTimeout  = 2 * time.Second
	DefaultReadyInterval = 250 * time.Millisecond
	DefaultStartTimeout  = 30 * time.Second
	DefaultStopTimeout   = 30 * time.Second
)

// firstPause is the shortest pause between readiness attempts; pauses grow
// with the time spent waiting, up to ReadyInterval, so a fast service is
// seen ready within a millisecond or two while a slow one is not polled in
// a tight loop.
const firstPause = time.Millisecond

// ErrTimeout matches, with errors.Is, the errors Start and Stop return when
// the unit's own StartTimeout or StopTimeout runs out, so that a caller can
// tell "too slow" from "broken". It does not match when the caller's ctx
// ends first: that error wraps the ctx's error instead.
var ErrTimeout = errors.New("timed out")

// Backend starts and stops the thing itself.
type Backend interface {
	// Start launches the service and returns once it is launched, not
	// necessarily ready. Starting a running service is not an error.
	Start(ctx context.Context) error
	// Stop stops the service and returns once it is stopped. Stopping a
	// stopped service is not an error.
	Stop(ctx context.Context) error
}

// Settler is a Backend whose Start returns before it knows that the
// service survived its first moments: a process that exits at once, on a
// bad flag or a port in use.
type Settler interface {
	// Exited reports, without waiting, a death before Settle confirmed
	// the service.
	Exited() error
	// Settle waits out the probation of the last Start, then confirms the
	// service or reports how it died.
	Settle(ctx context.Context) error
}

// Checker tells whether a started service is ready to serve.
type Checker interface {
	// Check returns nil when the service is ready. One attempt, bounded by ctx.
	Check(ctx context.Context) error
}

// Unit is one configured service.
type Unit struct {
	Name    string
	Backend Backend
	// Ready is nil when the service is ready as soon as it is started.
	Ready Checker
	// ReadyTimeout bounds one readiness attempt.
	ReadyTimeout time.Duration
	// ReadyInterval is the longest pause between readiness attempts.
	ReadyInterval time.Duration
	// StartTimeout bounds Backend.Start plus waiting for readiness.
	StartTimeout time.Duration
	// StopTimeout bounds Backend.Stop.
	StopTimeout time.Duration
}

// TimeoutError is the error of a Start or Stop that ran out of time. It
// matches ErrTimeout and unwraps to Err, so that the reason (the last
// readiness error, or what the backend said when cut off) is not lost.
type TimeoutError struct {
	// Op is "start" (Backend.Start was still running), "ready" (started
	// but never ready) or "stop".
	Op string
	// After is the timeout that ran out.
	After time.Duration
	// Err is the last readiness error, or the backend's own error if it
	// returned one at the deadline; nil when there is nothing to add.
	Err error
}

// Error says what did not finish in time and why, for an operator.
func (e *TimeoutError) Error() string {
	var msg string
	if e.Op == "ready" {
		msg = fmt.Sprintf("not ready after %s", e.After)
	} else {
		msg = fmt.Sprintf("%s did not finish within %s", e.Op, e.After)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrTimeout.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the underlying reason.
func (e *TimeoutError) Unwrap() error { return e.Err }

// Start starts the backend and waits until the unit is ready, all within
// StartTimeout. It returns promptly at the deadline even if the backend or
// the checker ignore ctx. When the unit does not become ready, the backend
// is left running: whether to stop it is the caller's decision. Errors do
// not name the unit; the caller adds the name.
func (u *Unit) Start(ctx context.Context) error {
	if u.Backend == nil {
		return errors.New("no backend")
	}
	timeout := orDefault(u.StartTimeout, DefaultStartTimeout)
	begin := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if err := bounded(sctx, u.Backend.Start); err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("start interrupted after %s: %w", since(begin), err)
		case sctx.Err() != nil:
			return &TimeoutError{Op: "start", After: timeout, Err: unlessCtxErr(sctx, err)}
		}
		return err
	}
	if u.Ready == nil {
		return nil
	}
	return u.waitReady(ctx, sctx, begin, timeout)
}

// waitReady polls the checker until it passes or sctx ends. ctx is the
// caller's context, used to tell the caller's cancellation from our timeout.
func (u *Unit) waitReady(ctx, sctx context.Context, begin time.Time, timeout time.Duration) error {
	attemptTimeout := orDefault(u.ReadyTimeout, DefaultReadyTimeout)
	interval := orDefault(u.ReadyInterval, DefaultReadyInterval)
	var last error
	for {
		actx, cancel := context.WithTimeout(sctx, attemptTimeout)
		err := bounded(actx, u.Ready.Check)
		if err != nil && err == actx.Err() && sctx.Err() == nil {
			// The checker did not return in time: say so rather than
			// "context deadline exceeded".
			err = fmt.Errorf("check did not finish within %s", attemptTimeout)
		}
		cancel()
		if err == nil {
			return nil
		}
		if st, ok := u.Backend.(Settler); ok {
			if dead := st.Exited(); dead != nil {
				return dead
			}
		}
		// An attempt cut short by the overall deadline says less than the
		// one before it, so keep the earlier reason if there is one.
		if sctx.Err() == nil || last == nil {
			last = err
		}
		if sctx.Err() == nil {
			select {
			case <-time.After(pause(time.Since(begin), interval)):
				continue
			case <-sctx.Done():
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("not ready after %s (%w): %w", since(begin), ctx.Err(), last)
		}
		return &TimeoutError{Op: "ready", After: timeout, Err: last}
	}
}

// pause is the wait before the next readiness attempt: short at first, as
// most services are ready within milliseconds and every pause adds to the
// whole start, then growing with the time already spent, up to interval.
func pause(elapsed, interval time.Duration) time.Duration {
	return min(max(elapsed/4, firstPause), interval)
}

// Settle confirms that a started unit survived its first moments, for
// backends whose Start returns before they know (see Settler). The node
// settles all its units once they are started, so the waits overlap.
func (u *Unit) Settle(ctx context.Context) error {
	if st, ok := u.Backend.(Settler); ok {
		return st.Settle(ctx)
	}
	return nil
}

// Stop stops the backend within StopTimeout, returning promptly at the
// deadline even if the backend ignores ctx.
func (u *Unit) Stop(ctx context.Context) error {
	if u.Backend == nil {
		return errors.New("no backend")
	}
	timeout := orDefault(u.StopTimeout, DefaultStopTimeout)
	begin := time.Now()
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := bounded(sctx, u.Backend.Stop); err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("stop interrupted after %s: %w", since(begin), err)
		case sctx.Err() != nil:
			return &TimeoutError{Op: "stop", After: timeout, Err: unlessCtxErr(sctx, err)}
		}
		return err
	}
	return nil
}

// bounded runs fn on its own goroutine and returns when fn does or when ctx
// ends, whichever comes first, so that a backend that ignores ctx cannot
// hold the node's transition forever. If ctx ends first, fn's goroutine is
// left to finish on its own and its result is dropped.
func bounded(ctx context.Context, fn func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // finished at the deadline: its word is better
			return err
		default:
			return ctx.Err()
		}
	}
}

// unlessCtxErr returns err unless it is only ctx's own error, which adds
// nothing to a TimeoutError.
func unlessCtxErr(ctx context.Context, err error) error {
	if err == ctx.Err() {
		return nil
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// since is the time elapsed since t, rounded for a message.
func since(t time.Time) time.Duration {
	d := time.Since(t)
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
