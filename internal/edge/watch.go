package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

// stream follows a node's event stream, reconnecting with backoff. The
// stream is what makes a takeover visible within milliseconds; when it
// breaks the poller takes over at once (kick), so an agent that died is
// seen as unreachable within one poll timeout.
func (e *Edge) stream(n *nodeWatch) {
	backoff := 100 * time.Millisecond
	for e.ctx.Err() == nil {
		begun := time.Now()
		err := n.src.Events(e.ctx, e.opts.NodeIdle,
			func(s node.Snapshot) {
				n.streaming.Store(true)
				e.do(func() { e.observe(n, s, "events") })
			},
			func() { e.do(func() { e.beat(n) }) })
		if e.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stream ended")
		}
		n.streaming.Store(false)
		e.do(func() { e.streamDown(n, err) })
		select {
		case n.kick <- struct{}{}:
		default:
		}
		if time.Since(begun) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		if !sleep(e.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// poll reads a node's status while its event stream is down: a node whose
// stream and poll both fail counts as not Active.
func (e *Edge) poll(n *nodeWatch) {
	t := time.NewTicker(e.opts.NodePoll)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		if n.streaming.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.NodeTimeout)
		s, err := n.src.Status(ctx)
		cancel()
		if e.ctx.Err() != nil {
			return
		}
		e.do(func() {
			if err != nil {
				e.unreachable(n, err)
			} else {
				e.observe(n, s, "poll")
			}
		})
	}
}

// check runs a backend's active health check every Interval. A backend
// without a check is still probed (a TCP connect every probeEvery), but
// only while failed connections have marked it down, so that it comes
// back without waiting for its node to change.
func (e *Edge) check(b *backend) {
	c := b.cfg.Health
	every := e.probeEvery
	if c != nil {
		every = c.Interval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for first := c != nil; ; first = false {
		if !first {
			select {
			case <-e.ctx.Done():
				return
			case <-t.C:
			case <-b.checkNow:
			}
		}
		if c == nil && !b.down.Load() {
			continue
		}
		err := e.probe(b)
		if e.ctx.Err() != nil {
			return
		}
		e.do(func() { e.checked(b, err) })
	}
}

// probe runs one check: an HTTP GET of the check's path (2xx and 3xx
// pass, as with HAProxy's httpchk) or a TCP connect.
func (e *Edge) probe(b *backend) error {
	timeout := e.opts.DialTimeout
	path := ""
	if c := b.cfg.Health; c != nil {
		timeout, path = c.Timeout, c.Path
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	if path == "" {
		conn, err := e.dialer.DialContext(ctx, "tcp", b.cfg.Address)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.cfg.Address+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "resilience-edge-check")
	resp, err := e.checker.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("GET %s: no answer within %s", path, timeout)
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// checked applies a check's result: Rise passes in a row bring the
// backend up, Fall failures take it down. The first result decides at
// once, so that a dead backend is not trusted for Fall intervals after
// start-up. Any pass lifts a mark left by failed connections.
func (e *Edge) checked(b *backend, err error) {
	c := b.cfg.Health
	if c == nil {
		if err == nil && b.passiveDown {
			e.clearPassive(b, "connect probe passed")
		}
		return
	}
	h := &b.health
	h.at = time.Now()
	if err == nil {
		h.passes, h.fails, h.err = h.passes+1, 0, ""
		if !h.up && (!h.known || h.passes >= c.Rise || h.vouched) {
			h.up = true
			e.log.Info("backend health check up", "backend", b.cfg.Name, "passes", h.passes)
		}
		h.vouched = false
		if b.passiveDown {
			e.clearPassive(b, "health check passed")
		}
	} else {
		h.passes, h.fails, h.err = 0, h.fails+1, err.Error()
		if h.up && (!h.known || h.fails >= c.Fall) {
			h.up = false
			e.log.Warn("backend health check down", "backend", b.cfg.Name, "fails", h.fails, "err", err)
		}
	}
	h.known = true
	result := "pass"
	if err != nil {
		result = "fail"
	}
	e.m.checks.WithLabelValues(b.cfg.Name, result).Inc()
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
