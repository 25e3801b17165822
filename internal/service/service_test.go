package service_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/service"
	"github.com/xivo-resilience/resilience/internal/service/ready"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend runs the given functions; nil ones succeed at once.
type fakeBackend struct {
	start, stop func(ctx context.Context) error
	starts      atomic.Int32
}

func (f *fakeBackend) Start(ctx context.Context) error {
	f.starts.Add(1)
	if f.start == nil {
		return nil
	}
	return f.start(ctx)
}

func (f *fakeBackend) Stop(ctx context.Context) error {
	if f.stop == nil {
		return nil
	}
	return f.stop(ctx)
}

// checkFunc is a Checker made of a function.
type checkFunc func(ctx context.Context) error

func (f checkFunc) Check(ctx context.Context) error { return f(ctx) }

// hang returns a function that ignores ctx and blocks until the test ends,
// the way a misbehaving backend would.
func hang(t *testing.T) func(context.Context) error {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(context.Context) error {
		<-release
		return nil
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnit_Start(t *testing.T) {
	t.Run("ready after a delay", func(t *testing.T) {
		var readyAt atomic.Int64
		begin := time.Now()
		readyAt.Store(begin.Add(200 * time.Millisecond).UnixNano())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if time.Now().UnixNano() < readyAt.Load() {
				http.Error(w, "warming up", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		}))
		defer srv.Close()
		b := &fakeBackend{}
		u := &service.Unit{
			Name: "web", Backend: b, Ready: ready.HTTP{URL: srv.URL},
			ReadyInterval: 20 * time.Millisecond, StartTimeout: 10 * time.Second,
		}
		if err := u.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if d := time.Since(begin); d < 200*time.Millisecond {
			t.Errorf("ready after %s, before the service was", d)
		}
		if n := b.starts.Load(); n != 1 {
			t.Errorf("backend started %d times, want 1", n)
		}
	})

	t.Run("no readiness check", func(t *testing.T) {
		u := &service.Unit{Backend: &fakeBackend{}}
		if err := u.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
	})

	t.Run("never ready", func(t *testing.T) {
		addr := closedAddr(t)
		b := &fakeBackend{stop: func(context.Context) error {
			t.Error("Start stopped the backend: that is the caller's call")
			return nil
		}}
		u := &service.Unit{
			Backend: b, Ready: ready.TCP{Address: addr},
			ReadyInterval: 20 * time.Millisecond, StartTimeout: 300 * time.Millisecond,
		}
		begin := time.Now()
		err := u.Start(context.Background())
		if !errors.Is(err, service.ErrTimeout) {
			t.Fatalf("Start: %v, want ErrTimeout", err)
		}
		want := "not ready after 300ms: dial tcp " + addr + ": connect: connection refused"
		if err.Error() != want {
			t.Errorf("error:\n got %q\nwant %q", err, want)
		}
		var te *service.TimeoutError
		if !errors.As(err, &te) || te.Op != "ready" {
			t.Errorf("error %#v, want a TimeoutError with Op ready", err)
		}
		if d := time.Since(begin); d > 3*time.Second {
			t.Errorf("returned after %s, want about 300ms", d)
		}
	})

	t.Run("backend start hangs", func(t *testing.T) {
		u := &service.Unit{Backend: &fakeBackend{start: hang(t)}, StartTimeout: 100 * time.Millisecond}
		begin := time.Now()
		err := u.Start(context.Background())
		if !errors.Is(err, service.ErrTimeout) {
			t.Fatalf("Start: %v, want ErrTimeout", err)
		}
		if want := "start did not finish within 100ms"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("returned after %s, want about 100ms", d)
		}
	})

	t.Run("backend start fails", func(t *testing.T) {
		boom := errors.New("exited at once: exit status 1: bad flag")
		checked := false
		u := &service.Unit{
			Backend: &fakeBackend{start: func(context.Context) error { return boom }},
			Ready:   checkFunc(func(context.Context) error { checked = true; return nil }),
		}
		err := u.Start(context.Background())
		if !errors.Is(err, boom) || errors.Is(err, service.ErrTimeout) {
			t.Fatalf("Start: %v, want the backend's error as is", err)
		}
		if checked {
			t.Error("readiness checked after a failed start")
		}
	})

	t.Run("check hangs", func(t *testing.T) {
		u := &service.Unit{
			Backend: &fakeBackend{}, Ready: checkFunc(hang(t)),
			ReadyTimeout: 50 * time.Millisecond, ReadyInterval: 10 * time.Millisecond,
			StartTimeout: 400 * time.Millisecond,
		}
		begin := time.Now()
		err := u.Start(context.Background())
		if !errors.Is(err, service.ErrTimeout) {
			t.Fatalf("Start: %v, want ErrTimeout", err)
		}
		if want := "not ready after 400ms: check did not finish within 50ms"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if d := time.Since(begin); d > 3*time.Second {
			t.Errorf("returned after %s, want about 400ms", d)
		}
	})

	t.Run("attempt bounded by ReadyTimeout", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			readyTimeout time.Duration
			want         time.Duration
		}{
			{"set", 300 * time.Millisecond, 300 * time.Millisecond},
			{"default", 0, service.DefaultReadyTimeout},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var left time.Duration
				u := &service.Unit{
					Backend: &fakeBackend{}, ReadyTimeout: tc.readyTimeout,
					Ready: checkFunc(func(ctx context.Context) error {
						dl, ok := ctx.Deadline()
						if !ok {
							return errors.New("no deadline")
						}
						left = time.Until(dl)
						return nil
					}),
				}
				if err := u.Start(context.Background()); err != nil {
					t.Fatalf("Start: %v", err)
				}
				if left > tc.want || left < tc.want-time.Second/2 {
					t.Errorf("attempt had %s left, want about %s", left, tc.want)
				}
			})
		}
	})

	t.Run("polling pace", func(t *testing.T) {
		const fails = 10
		var mu sync.Mutex
		var at []time.Time
		u := &service.Unit{
			Backend: &fakeBackend{}, ReadyInterval: 20 * time.Millisecond,
			Ready: checkFunc(func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				at = append(at, time.Now())
				if len(at) <= fails {
					return fmt.Errorf("attempt %d", len(at))
				}
				return nil
			}),
		}
		begin := time.Now()
		if err := u.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		total := time.Since(begin)
		mu.Lock()
		defer mu.Unlock()
		if len(at) != fails+1 {
			t.Fatalf("%d attempts, want %d", len(at), fails+1)
		}
		for i := 1; i < len(at); i++ {
			// A little slack: Start's own clock starts just after begin.
			want := min(max(at[i-1].Sub(begin)/4, time.Millisecond), 20*time.Millisecond) - 200*time.Microsecond
			if gap := at[i].Sub(at[i-1]); gap < want {
				t.Errorf("pause %d: %s, want at least %s", i, gap, want)
			}
		}
		// Uncapped growth would take seconds; capped, well under 200ms.
		if total > 1500*time.Millisecond {
			t.Errorf("took %s: pauses not capped at ReadyInterval", total)
		}
	})

	t.Run("caller cancels", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		notYet := errors.New("not yet")
		u := &service.Unit{
			Backend: &fakeBackend{}, ReadyInterval: 10 * time.Millisecond,
			Ready: checkFunc(func(context.Context) error { return notYet }),
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		err := u.Start(ctx)
		if errors.Is(err, service.ErrTimeout) || !errors.Is(err, context.Canceled) || !errors.Is(err, notYet) {
			t.Fatalf("Start: %v, want context.Canceled and the last check error, not ErrTimeout", err)
		}
		if !strings.HasPrefix(err.Error(), "not ready after ") {
			t.Errorf("error %q, want it to start with %q", err, "not ready after ")
		}
	})

	t.Run("caller cancels while backend starts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		u := &service.Unit{Backend: &fakeBackend{start: hang(t)}}
		err := u.Start(ctx)
		if errors.Is(err, service.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start: %v, want context.DeadlineExceeded, not ErrTimeout", err)
		}
	})

	t.Run("no backend", func(t *testing.T) {
		if err := (&service.Unit{}).Start(context.Background()); err == nil {
			t.Fatal("Start with no backend: no error")
		}
	})
}

func TestUnit_Stop(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		stopped := false
		u := &service.Unit{Backend: &fakeBackend{stop: func(context.Context) error { stopped = true; return nil }}}
		if err := u.Stop(context.Background()); err != nil || !stopped {
			t.Fatalf("Stop: %v, stopped %v", err, stopped)
		}
	})

	t.Run("fails", func(t *testing.T) {
		boom := errors.New("boom")
		u := &service.Unit{Backend: &fakeBackend{stop: func(context.Context) error { return boom }}}
		if err := u.Stop(context.Background()); !errors.Is(err, boom) {
			t.Fatalf("Stop: %v, want %v", err, boom)
		}
	})

	t.Run("hangs", func(t *testing.T) {
		u := &service.Unit{Backend: &fakeBackend{stop: hang(t)}, StopTimeout: 100 * time.Millisecond}
		begin := time.Now()
		err := u.Stop(context.Background())
		if !errors.Is(err, service.ErrTimeout) {
			t.Fatalf("Stop: %v, want ErrTimeout", err)
		}
		if want := "stop did not finish within 100ms"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("returned after %s, want about 100ms", d)
		}
	})

	t.Run("stop deadline", func(t *testing.T) {
		var left time.Duration
		u := &service.Unit{Backend: &fakeBackend{stop: func(ctx context.Context) error {
			dl, _ := ctx.Deadline()
			left = time.Until(dl)
			return nil
		}}}
		if err := u.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if want := service.DefaultStopTimeout; left > want || left < want-time.Second {
			t.Errorf("stop had %s left, want about %s", left, want)
		}
	})
}

func TestTimeoutError_Error(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *service.TimeoutError
		want string
	}{
		{"start", &service.TimeoutError{Op: "start", After: 30 * time.Second}, "start did not finish within 30s"},
		{"start with reason", &service.TimeoutError{Op: "start", After: time.Second, Err: errors.New("killed")}, "start did not finish within 1s: killed"},
		{"ready", &service.TimeoutError{Op: "ready", After: 2 * time.Second, Err: errors.New("connection refused")}, "not ready after 2s: connection refused"},
		{"stop", &service.TimeoutError{Op: "stop", After: 30 * time.Second}, "stop did not finish within 30s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if !errors.Is(tc.err, service.ErrTimeout) {
				t.Error("does not match ErrTimeout")
			}
		})
	}
}
