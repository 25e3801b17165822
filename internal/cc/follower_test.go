package cc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeXiVO serves a status by stream and by poll; either can be cut.
type fakeXiVO struct {
	mu         sync.Mutex
	snap       node.Snapshot
	streamCut  bool
	statusCut  bool
	subs       map[chan node.Snapshot]bool
	polls      atomic.Int32
	streamsRun atomic.Int32
}

func newFakeXiVO(s node.Status, epoch uint64) *fakeXiVO {
	return &fakeXiVO{snap: node.Snapshot{Name: "xivo-main", Status: s, Desired: s, Epoch: epoch}, subs: map[chan node.Snapshot]bool{}}
}

func (x *fakeXiVO) Status(ctx context.Context) (node.Snapshot, error) {
	x.polls.Add(1)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.statusCut {
		return node.Snapshot{}, errors.New("connection refused")
	}
	return x.snap, nil
}

func (x *fakeXiVO) Events(ctx context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error {
	x.mu.Lock()
	if x.streamCut {
		x.mu.Unlock()
		return errors.New("stream refused")
	}
	x.streamsRun.Add(1)
	ch := make(chan node.Snapshot, 16)
	x.subs[ch] = true
	cur := x.snap
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		delete(x.subs, ch)
		x.mu.Unlock()
	}()
	fn(cur)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s, ok := <-ch:
			if !ok {
				return errors.New("stream ended")
			}
			fn(s)
		}
	}
}

// set changes the XiVO's status; the stream, if up, carries it.
func (x *fakeXiVO) set(s node.Status, epoch uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.snap = node.Snapshot{Name: "xivo-main", Status: s, Desired: s, Epoch: epoch}
	for ch := range x.subs {
		ch <- x.snap
	}
}

// cut cuts the stream (open ones end) and, if all, the polls too.
func (x *fakeXiVO) cut(all bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.streamCut, x.statusCut = true, all
	for ch := range x.subs {
		close(ch)
		delete(x.subs, ch)
	}
}

type unit struct{ starts, stops atomic.Int32 }

func (u *unit) Start(ctx context.Context) error { u.starts.Add(1); return nil }
func (u *unit) Stop(ctx context.Context) error  { u.stops.Add(1); return nil }

func setup(t *testing.T, x *fakeXiVO) (*node.Machine, *unit, *Follower) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := &unit{}
	m, err := node.New(node.Options{Name: "cc-main", Kind: "cc", Role: "main", Mode: "follow", Follows: "xivo-main",
		Services: []node.Service{{Name: "xuc", Unit: u}}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Name: "xivo-main", XiVO: x, Machine: m, PollInterval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(context.Background())
	t.Cleanup(func() {
		f.Stop()
		m.Close(context.Background())
		st.Close()
	})
	return m, u, f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func settled(m *node.Machine, want node.Status) func() bool {
	return func() bool { s := m.Snapshot(); return s.Status == want && s.Transition == nil }
}

func TestFollower_FollowsTheStream(t *testing.T) {
	x := newFakeXiVO(node.Active, 4)
	m, u, _ := setup(t, x)
	waitFor(t, "cc active at start-up", settled(m, node.Active))
	// The start-up poll may have been first; the stream follows.
	waitFor(t, "stream up", func() bool { f := m.Snapshot().Followed; return f != nil && f.Via == "events" })
	if s := m.Snapshot(); s.Epoch != 4 || s.Followed == nil || s.Followed.Via != "events" || s.Followed.Status != node.Active {
		t.Fatalf("cc: epoch %d followed %+v, want the XiVO's epoch 4 via events", s.Epoch, s.Followed)
	}
	// Until the stream's first event the follower polls (start-up
	// convergence), and one poll may have begun just before: count from
	// a poll interval after the stream is up.
	time.Sleep(50 * time.Millisecond)
	polls := x.polls.Load()
	x.set(node.Deactivating, 4)
	x.set(node.Inactive, 4)
	waitFor(t, "cc inactive", settled(m, node.Inactive))
	x.set(node.Active, 6)
	waitFor(t, "cc active again", func() bool { return settled(m, node.Active)() && m.Snapshot().Epoch == 6 })
	if u.starts.Load() != 2 || u.stops.Load() != 1 {
		t.Fatalf("starts %d stops %d, want 2 and 1", u.starts.Load(), u.stops.Load())
	}
	if n := x.polls.Load() - polls; n != 0 {
		t.Errorf("%d polls while the stream was up", n)
	}

	t.Run("an operator cannot start or stop a cc node", func(t *testing.T) {
		_, err := m.StopServices(context.Background(), node.Request{Actor: "admin"})
		var fe *node.FollowingError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "cc-main follows xivo-main") {
			t.Fatalf("err = %v, want a FollowingError", err)
		}
		if m.Snapshot().Status != node.Active {
			t.Fatal("refused stop changed the node")
		}
	})
}

func TestFollower_PollsWhileTheStreamIsDown(t *testing.T) {
	x := newFakeXiVO(node.Inactive, 1)
	m, _, _ := setup(t, x)
	waitFor(t, "stream up", func() bool { f := m.Snapshot().Followed; return f != nil && f.Via == "events" })
	x.cut(false)
	x.set(node.Active, 2) // the stream is gone: only a poll can see this
	waitFor(t, "cc active through polls", settled(m, node.Active))
	if f := m.Snapshot().Followed; f.Via != "poll" || f.Epoch != 2 {
		t.Fatalf("followed %+v, want via poll at epoch 2", f)
	}
}

func TestFollower_UnreachableChangesNothing(t *testing.T) {
	x := newFakeXiVO(node.Active, 3)
	m, u, _ := setup(t, x)
	waitFor(t, "cc active", settled(m, node.Active))
	x.cut(true)
	waitFor(t, "warning shown", func() bool {
		for _, w := range m.Snapshot().Warnings {
			if w.Code == node.WarnXiVOUnreachable && strings.Contains(w.Message, "keeping services as they are") {
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond) // several polls fail meanwhile
	if s := m.Snapshot(); s.Status != node.Active || u.stops.Load() != 0 {
		t.Fatalf("unreachable XiVO changed the cc: %s, %d stops", s.Status, u.stops.Load())
	}
}
