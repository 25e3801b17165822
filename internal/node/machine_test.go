package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder collects the calls made to fake units, in order.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// fakeUnit is a service whose Start can fail or block.
type fakeUnit struct {
	name     string
	rec      *recorder
	startErr error
	block    chan struct{} // Start waits on it when non-nil
}

func (u *fakeUnit) Start(ctx context.Context) error {
	u.rec.add("start " + u.name)
	if u.block != nil {
		select {
		case <-u.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return u.startErr
}

func (u *fakeUnit) Stop(ctx context.Context) error {
	u.rec.add("stop " + u.name)
	return nil
}

// fakePeer answers with a fixed snapshot or error.
type fakePeer struct {
	mu   sync.Mutex
	snap Snapshot
	err  error
}

func (p *fakePeer) Name() string { return "xivo-standby" }
func (p *fakePeer) Status(ctx context.Context) (Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.err
}
func (p *fakePeer) set(s Status, epoch uint64, err error) {
	p.mu.Lock()
	p.snap = Snapshot{Name: "xivo-standby", Status: s, Desired: s, Epoch: epoch}
	p.err = err
	p.mu.Unlock()
}

type fixture struct {
	m     *Machine
	rec   *recorder
	units []*fakeUnit
	peer  *fakePeer
	st    *store.Store
	dir   string
}

func newFixture(t *testing.T, dir string, names ...string) *fixture {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{rec: &recorder{}, peer: &fakePeer{}, st: st, dir: dir}
	f.peer.set(Inactive, 0, nil)
	var svcs []Service
	for _, n := range names {
		u := &fakeUnit{name: n, rec: f.rec}
		f.units = append(f.units, u)
		svcs = append(svcs, Service{Name: n, Unit: u})
	}
	f.m, err = New(Options{Name: "xivo-main", Kind: "xivo", Role: "main", Mode: "manual",
		Services: svcs, Peer: f.peer, Store: st, PeerTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	if f.m == nil {
		return
	}
	f.m.Close(context.Background())
	f.st.Close()
	f.m = nil
}

var admin = Request{Actor: "admin", Remote: "127.0.0.1", Reason: "test"}

func TestMachine_StartStopOrder(t *testing.T) {
	f := newFixture(t, t.TempDir(), "consul", "asterisk", "xivo-ctid")
	ctx := context.Background()
	s, err := f.m.StartServices(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != Active || s.Epoch != 1 {
		t.Fatalf("after start: status %s epoch %d, want active 1", s.Status, s.Epoch)
	}
	if got, want := f.rec.take(), []string{"start consul", "start asterisk", "start xivo-ctid"}; !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	s, err = f.m.StopServices(ctx, admin)
	if err != nil || s.Status != Inactive {
		t.Fatalf("after stop: %s, %v", s.Status, err)
	}
	if got, want := f.rec.take(), []string{"stop xivo-ctid", "stop asterisk", "stop consul"}; !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	for _, svc := range s.Services {
		if svc.State != ServiceStopped {
			t.Errorf("%s: %s, want stopped", svc.Name, svc.State)
		}
	}

	t.Run("repeats change nothing", func(t *testing.T) {
		s, err := f.m.StopServices(ctx, admin)
		if err != nil || s.Status != Inactive {
			t.Fatalf("stop again: %s %v", s.Status, err)
		}
		if _, err := f.m.StartServices(ctx, admin); err != nil {
			t.Fatal(err)
		}
		f.rec.take()
		s, err = f.m.StartServices(ctx, admin)
		if err != nil || s.Status != Active || s.Epoch != 2 {
			t.Fatalf("start again: %s epoch %d %v", s.Status, s.Epoch, err)
		}
		if calls := f.rec.take(); len(calls) != 0 {
			t.Fatalf("repeat made calls %v", calls)
		}
	})

	t.Run("audit log", func(t *testing.T) {
		h, err := f.st.History(100, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(h) - 1; i >= 0; i-- {
			got = append(got, h[i].Action+":"+h[i].Result)
		}
		want := []string{"start:begun", "start:ok", "stop:begun", "stop:ok", "stop:noop", "start:begun", "start:ok", "start:noop"}
		if !slices.Equal(got, want) {
			t.Fatalf("audit = %v, want %v", got, want)
		}
		if h[0].Actor != "admin" || h[0].Reason != "test" || h[0].Remote != "127.0.0.1" {
			t.Errorf("entry = %+v, want actor, reason and remote", h[0])
		}
	})
}

func TestMachine_OneTransitionAtATime(t *testing.T) {
	f := newFixture(t, t.TempDir(), "asterisk")
	f.units[0].block = make(chan struct{})
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := f.m.StartServices(ctx, admin)
		done <- err
	}()
	waitFor(t, func() bool { return f.m.Snapshot().Status == Activating })
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); _, err := f.m.StartServices(ctx, admin); errs <- err }()
		go func() { defer wg.Done(); _, err := f.m.StopServices(ctx, admin); errs <- err }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrTransitionInProgress) {
			t.Fatalf("concurrent request: %v, want ErrTransitionInProgress", err)
		}
	}
	close(f.units[0].block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.rec.take(); !slices.Equal(got, []string{"start asterisk"}) {
		t.Fatalf("calls = %v, want one start", got)
	}
}

func TestMachine_PeerGuard(t *testing.T) {
	ctx := context.Background()
	t.Run("peer active refuses", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		f.peer.set(Active, 7, nil)
		s, err := f.m.StartServices(ctx, admin)
		var pa *PeerActiveError
		if !errors.As(err, &pa) || !errors.Is(err, ErrPeerActive) {
			t.Fatalf("err = %v, want PeerActiveError", err)
		}
		if !strings.Contains(err.Error(), "xivo-standby is active (epoch 7)") || !strings.Contains(err.Error(), "force") {
			t.Errorf("message %q should say who is active and what to do", err)
		}
		if s.Status != Inactive || len(f.rec.take()) != 0 {
			t.Fatalf("refused start changed something: %s", s.Status)
		}
	})
	t.Run("force is a takeover", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		f.peer.set(Active, 7, nil)
		req := admin
		req.Force = true
		s, err := f.m.StartServices(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != Active || s.Epoch != 8 || s.Takeover == nil || s.Takeover.From != "xivo-standby" {
			t.Fatalf("takeover: %+v", s)
		}
		if !hasWarning(s, WarnPeerStillActive) {
			t.Errorf("warnings %v: want %s", s.Warnings, WarnPeerStillActive)
		}
	})
	t.Run("peer unreachable goes on with a warning", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		f.peer.set("", 0, errors.New("connection refused"))
		s, err := f.m.StartServices(ctx, admin)
		if err != nil || s.Status != Active {
			t.Fatalf("start: %s %v", s.Status, err)
		}
		if !hasWarning(s, WarnPeerUnreachableAtStart) {
			t.Fatalf("warnings %v: want %s", s.Warnings, WarnPeerUnreachableAtStart)
		}
		s, _ = f.m.StopServices(ctx, admin)
		if hasWarning(s, WarnPeerUnreachableAtStart) {
			t.Fatalf("warning kept after stop: %v", s.Warnings)
		}
	})
	t.Run("superseded after the peer took over", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		if _, err := f.m.StartServices(ctx, admin); err != nil {
			t.Fatal(err)
		}
		f.m.ObservePeer(Snapshot{Name: "xivo-standby", Status: Active, Desired: Active, Epoch: 2,
			Takeover: &Takeover{From: "xivo-main", Epoch: 2, PeerEpoch: 1}}, nil)
		s := f.m.Snapshot()
		if !hasWarning(s, WarnSuperseded) || !strings.Contains(warning(s, WarnSuperseded), "xivo-standby took over at epoch 2: stop services here") {
			t.Fatalf("warnings %v: want superseded", s.Warnings)
		}
		s, _ = f.m.StopServices(ctx, admin)
		if hasWarning(s, WarnSuperseded) {
			t.Fatalf("superseded kept after stop: %v", s.Warnings)
		}
	})
	t.Run("both active without takeover is an alarm", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		f.peer.set("", 0, errors.New("timeout"))
		if _, err := f.m.StartServices(ctx, admin); err != nil {
			t.Fatal(err)
		}
		f.m.ObservePeer(Snapshot{Name: "xivo-standby", Status: Active, Desired: Active, Epoch: 4}, nil)
		if s := f.m.Snapshot(); !hasWarning(s, WarnBothActive) {
			t.Fatalf("warnings %v: want both_active", s.Warnings)
		}
	})
}

func TestMachine_ServiceFailure(t *testing.T) {
	f := newFixture(t, t.TempDir(), "consul", "asterisk", "xivo-ctid")
	f.units[1].startErr = errors.New("not ready after 2s: connection refused")
	ctx := context.Background()
	s, err := f.m.StartServices(ctx, admin)
	if !errors.Is(err, ErrTransitionFailed) {
		t.Fatalf("err = %v, want ErrTransitionFailed", err)
	}
	if s.Status != Failed || !strings.HasPrefix(s.Error, "asterisk: not ready") {
		t.Fatalf("status %s error %q, want failed naming asterisk", s.Status, s.Error)
	}
	want := map[string]ServiceState{"consul": ServiceRunning, "asterisk": ServiceFailed, "xivo-ctid": ServiceStopped}
	for _, svc := range s.Services {
		if svc.State != want[svc.Name] {
			t.Errorf("%s: %s, want %s", svc.Name, svc.State, want[svc.Name])
		}
	}
	if got := f.rec.take(); !slices.Equal(got, []string{"start consul", "start asterisk", "stop asterisk"}) {
		t.Fatalf("calls = %v", got)
	}
	f.units[1].startErr = nil
	s, err = f.m.StartServices(ctx, admin)
	if err != nil || s.Status != Active || s.Error != "" {
		t.Fatalf("retry: %s %q %v", s.Status, s.Error, err)
	}
}

func TestMachine_Recover(t *testing.T) {
	t.Run("killed while activating converges to active", func(t *testing.T) {
		dir := t.TempDir()
		st, _ := store.Open(dir, store.Options{})
		st.Write(&store.State{Desired: "active", Status: "activating", Epoch: 3})
		st.Close()
		f := newFixture(t, dir, "asterisk")
		f.m.Recover()
		waitFor(t, func() bool { return f.m.Snapshot().Status == Active })
		h, _ := f.st.History(10, 0)
		if len(h) < 3 || !strings.Contains(h[len(h)-1].Message, "agent restarted while activating at epoch 3") {
			t.Fatalf("audit = %+v", h)
		}
	})
	t.Run("peer took over: stays inactive and says why", func(t *testing.T) {
		dir := t.TempDir()
		st, _ := store.Open(dir, store.Options{})
		st.Write(&store.State{Desired: "active", Status: "active", Epoch: 3})
		st.Close()
		f := newFixture(t, dir, "asterisk")
		f.peer.set(Active, 4, nil)
		f.m.Recover()
		waitFor(t, func() bool { return hasWarning(f.m.Snapshot(), WarnStayedInactive) && !f.m.busyNow() })
		s := f.m.Snapshot()
		if s.Status != Inactive || s.Desired != Inactive {
			t.Fatalf("status %s desired %s, want inactive", s.Status, s.Desired)
		}
		if !strings.Contains(warning(s, WarnStayedInactive), "xivo-standby took over at epoch 4") {
			t.Fatalf("warning = %q", warning(s, WarnStayedInactive))
		}
		if slices.Contains(f.rec.take(), "start asterisk") {
			t.Fatal("services were started")
		}
	})
	t.Run("fresh main starts active", func(t *testing.T) {
		f := newFixture(t, t.TempDir(), "asterisk")
		f.m.opts.InitialStatus = Active
		f.m.Recover()
		waitFor(t, func() bool { return f.m.Snapshot().Status == Active })
	})
}

func TestMachine_SubscribeSeesEveryStep(t *testing.T) {
	f := newFixture(t, t.TempDir(), "a", "b")
	ch, cancel := f.m.Subscribe()
	defer cancel()
	<-ch // current
	if _, err := f.m.StartServices(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	// Each step of the transition is an event, in order: what the peer
	// check found, activating, the services one by one, then active.
	var steps []string
	for len(ch) > 0 {
		var s Snapshot
		if err := json.Unmarshal(<-ch, &s); err != nil {
			t.Fatal(err)
		}
		step := string(s.Status)
		for _, svc := range s.Services {
			step += " " + svc.Name + "=" + string(svc.State)
		}
		if len(steps) == 0 || steps[len(steps)-1] != step {
			steps = append(steps, step)
		}
	}
	want := []string{
		"inactive a=stopped b=stopped",
		"activating a=stopped b=stopped",
		"activating a=starting b=stopped",
		"activating a=running b=stopped",
		"activating a=running b=starting",
		"activating a=running b=running",
		"active a=running b=running",
	}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps =\n%s\nwant\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
}

func (m *Machine) busyNow() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.busy
}

func hasWarning(s Snapshot, code string) bool { return warning(s, code) != "" }

func warning(s Snapshot, code string) string {
	for _, w := range s.Warnings {
		if w.Code == code {
			return w.Message
		}
	}
	return ""
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
