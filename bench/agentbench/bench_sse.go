package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// sseTarget: every subscriber sees a change within this of the change.
const sseTarget = 50 * time.Millisecond

// benchSSE: N subscribers on /api/v1/events, each its own connection, and
// a Start services. For every subscriber: the receipt of the first
// "activating" event minus the change's time (the snapshot's "since",
// taken by the agent on the same clock), the same for "active", the time
// from sending the POST to the activating event, and the active event's
// receipt against the POST's answer. The peer is one subscriber alone.
func benchSSE(ctx context.Context, ps *procs, o options) error {
	const ip = "127.0.0.7"
	a, err := launchAgent(ctx, ps, o.bin, agentSetup{dir: filepath.Join(o.dir, "sse"), ip: ip, kind: sleepServices})
	if err != nil {
		return err
	}
	defer a.close(ps)

	res := map[int]*sseResult{}
	for _, n := range []int{1, o.subs} {
		r, err := sseRun(ctx, a, n, o.rounds)
		if err != nil {
			return fmt.Errorf("%d subscribers: %w (agent log: %s)", n, err, a.p.tail())
		}
		res[n] = r
	}
	one, many := res[1], res[o.subs]
	ok := many.missed == 0 && maxOf(many.actLag) < sseTarget && maxOf(many.activeLag) < sseTarget
	fmt.Printf("sse_fanout: %d subs: activating event - since p50=%s p99=%s max=%s, active event - since p99=%s max=%s | 1 sub: activating p50=%s p99=%s max=%s, active p99=%s max=%s | %d vs 1 subs p50 %s p99 %s | POST->activating p50=%s max=%s | active event - POST answer p50=%s max=%s (%d subs) | missed events %d [%d rounds, 13 x sleep] (target: all within %s) %s\n",
		o.subs, ms(pct(many.actLag, 50)), ms(pct(many.actLag, 99)), ms(maxOf(many.actLag)), ms(pct(many.activeLag, 99)), ms(maxOf(many.activeLag)),
		ms(pct(one.actLag, 50)), ms(pct(one.actLag, 99)), ms(maxOf(one.actLag)), ms(pct(one.activeLag, 99)), ms(maxOf(one.activeLag)),
		o.subs, ratio(float64(pct(many.actLag, 50)), float64(pct(one.actLag, 50))), ratio(float64(pct(many.actLag, 99)), float64(pct(one.actLag, 99))),
		ms(pct(many.postToAct, 50)), ms(maxOf(many.postToAct)),
		ms(pct(many.activeVsResp, 50)), ms(maxOf(many.activeVsResp)), o.subs,
		many.missed+one.missed, o.rounds, ms(sseTarget), passFail(ok))
	o.report(row{name: "sse_fanout",
		agent: fmt.Sprintf("%d subs: activating p99 %s max %s, active max %s", o.subs, ms(pct(many.actLag, 99)), ms(maxOf(many.actLag)), ms(maxOf(many.activeLag))),
		peer:  fmt.Sprintf("1 sub: activating p99 %s max %s, active max %s", ms(pct(one.actLag, 99)), ms(maxOf(one.actLag)), ms(maxOf(one.activeLag))),
		compare: fmt.Sprintf("p50 %s, p99 %s, max %s", ratio(float64(pct(many.actLag, 50)), float64(pct(one.actLag, 50))),
			ratio(float64(pct(many.actLag, 99)), float64(pct(one.actLag, 99))), ratio(float64(maxOf(many.actLag)), float64(maxOf(one.actLag)))),
		target: "all within 50ms", result: passFail(ok)})
	return nil
}

type sseResult struct {
	actLag       []time.Duration // activating event receipt - since
	activeLag    []time.Duration // active event receipt - since
	postToAct    []time.Duration // activating event receipt - POST sent
	activeVsResp []time.Duration // active event receipt - POST answered (negative: before)
	missed       int             // subscribers that never saw an activating event
}

func sseRun(ctx context.Context, a *agent, n, rounds int) (*sseResult, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subs := make([]*subscriber, n)
	for i := range subs {
		s, err := subscribe(sctx, a)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		defer s.close()
		subs[i] = s
	}
	for i, s := range subs {
		if err := s.waitFor(ctx, 0, "", 10*time.Second); err != nil {
			return nil, fmt.Errorf("subscriber %d: first event: %w", i, err)
		}
	}
	res := &sseResult{}
	for r := range rounds {
		st, err := a.status(ctx)
		if err != nil {
			return nil, err
		}
		rev0 := st.Revision
		tPost := time.Now()
		if _, err := a.transition(ctx, "start", "active"); err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		tResp := time.Now()
		for i, s := range subs {
			if err := s.waitFor(ctx, rev0, "active", 10*time.Second); err != nil {
				return nil, fmt.Errorf("round %d, subscriber %d: %w", r, i, err)
			}
		}
		for _, s := range subs {
			act, active := s.firstAfter(rev0)
			if act == nil {
				res.missed++
			} else {
				res.actLag = append(res.actLag, act.recv.Sub(act.since))
				res.postToAct = append(res.postToAct, act.recv.Sub(tPost))
			}
			res.activeLag = append(res.activeLag, active.recv.Sub(active.since))
			res.activeVsResp = append(res.activeVsResp, active.recv.Sub(tResp))
		}
		st, err = a.status(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := a.transition(ctx, "stop", "inactive"); err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		for i, s := range subs {
			if err := s.waitFor(ctx, st.Revision, "inactive", 10*time.Second); err != nil {
				return nil, fmt.Errorf("round %d, subscriber %d: %w", r, i, err)
			}
			s.reset()
		}
	}
	return res, nil
}

// sseEvent is one status event as a subscriber received it.
type sseEvent struct {
	recv   time.Time
	status string
	rev    uint64
	since  time.Time
}

type subscriber struct {
	tr     *http.Transport
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []sseEvent
	err    error
	wake   chan struct{} // closed and replaced at every event
}

// subscribe opens one event stream on its own connection and reads it on
// its own goroutine.
func subscribe(ctx context.Context, a *agent) (*subscriber, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &subscriber{
		tr:     &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 1},
		cancel: cancel,
		done:   make(chan struct{}),
		wake:   make(chan struct{}),
	}
	req, err := http.NewRequestWithContext(ctx, "GET", a.url+"/api/v1/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := s.tr.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("events: %s", resp.Status)
	}
	go s.read(resp)
	return s, nil
}

func (s *subscriber) close() {
	s.cancel()
	<-s.done
	s.tr.CloseIdleConnections()
}

// read parses the stream. The receipt time is taken when the data line
// arrives, before any decoding.
func (s *subscriber) read(resp *http.Response) {
	defer close(s.done)
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var isStatus bool
	var data []byte
	var recv time.Time
	checked := false
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			s.fail(err)
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if isStatus && len(data) > 0 {
				ev, err := quickParse(data)
				if err == nil && !checked {
					err = checkParse(data, ev)
					checked = true
				}
				if err != nil {
					s.fail(err)
					return
				}
				ev.recv = recv
				s.mu.Lock()
				s.events = append(s.events, ev)
				close(s.wake)
				s.wake = make(chan struct{})
				s.mu.Unlock()
			}
			isStatus, data = false, data[:0]
		case bytes.HasPrefix(line, []byte("event:")):
			isStatus = string(bytes.TrimSpace(line[len("event:"):])) == "status"
		case bytes.HasPrefix(line, []byte("data:")):
			if len(data) == 0 {
				recv = time.Now()
			}
			data = append(data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

func (s *subscriber) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// waitFor waits for an event with a revision above rev and, unless status
// is empty, that status.
func (s *subscriber) waitFor(ctx context.Context, rev uint64, status string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if e.rev > rev && (status == "" || e.status == status) {
				s.mu.Unlock()
				return nil
			}
		}
		err, wake := s.err, s.wake
		s.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-wake:
		case <-deadline:
			return fmt.Errorf("no %q event after revision %d within %s", status, rev, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// firstAfter returns the first activating and active events after rev.
func (s *subscriber) firstAfter(rev uint64) (act, active *sseEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.events {
		e := &s.events[i]
		if e.rev <= rev {
			continue
		}
		if e.status == "activating" && act == nil {
			act = e
		}
		if e.status == "active" && active == nil {
			active = e
		}
	}
	return act, active
}

// reset forgets the events seen so far, keeping the last one.
func (s *subscriber) reset() {
	s.mu.Lock()
	if n := len(s.events); n > 1 {
		s.events = append(s.events[:0], s.events[n-1])
	}
	s.mu.Unlock()
}

// quickParse reads the top-level revision, status and since of a status
// JSON without decoding it all: the agent writes them before services[],
// so their first occurrences are the top-level ones (checked once per
// stream against a full decode by checkParse). 100 readers decoding every
// snapshot in full would load the machine more than the agent does.
func quickParse(b []byte) (sseEvent, error) {
	var ev sseEvent
	str := func(key string) (string, bool) {
		i := bytes.Index(b, []byte(`"`+key+`":"`))
		if i < 0 {
			return "", false
		}
		rest := b[i+len(key)+4:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return "", false
		}
		return string(rest[:j]), true
	}
	st, ok1 := str("status")
	since, ok2 := str("since")
	i := bytes.Index(b, []byte(`"revision":`))
	if !ok1 || !ok2 || i < 0 {
		return ev, errors.New("status event without status, since or revision")
	}
	rest := b[i+len(`"revision":`):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	rev, err := strconv.ParseUint(string(rest[:j]), 10, 64)
	if err != nil {
		return ev, fmt.Errorf("revision: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, since)
	if err != nil {
		return ev, fmt.Errorf("since: %w", err)
	}
	return sseEvent{status: st, rev: rev, since: t}, nil
}

func checkParse(b []byte, ev sseEvent) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decode status event: %w", err)
	}
	if s.Status != ev.status || s.Revision != ev.rev || !s.Since.Equal(ev.since) {
		return fmt.Errorf("quick parse disagrees with the JSON: %+v vs %+v", ev, s)
	}
	return nil
}
