package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// agentEnv makes the test binary act as an agent that starts a child and
// waits to be killed, for TestBackend_pdeathsig.
const agentEnv = "RESILIENCE_EXEC_TEST_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) != "" {
		agentMain()
		return
	}
	goleak.VerifyTestMain(m)
}

func agentMain() {
	b := New(Options{Command: []string{"sleep", "60"}})
	if err := startSettle(b); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(b.PID())
	time.Sleep(time.Minute)
	os.Exit(2)
}

// wait is how long tests wait for something that should happen soon: long
// enough for a loaded machine, short enough to fail a hang quickly.
const wait = 10 * time.Second

// slowStart is the probation for tests of programs that exit at once: 50ms
// is enough for a real program, not for sh on a loaded machine under -race.
const slowStart = 2 * time.Second

// start returns a started Backend, stopped when the test ends.
func start(t *testing.T, opts Options) *Backend {
	t.Helper()
	b := newBackend(t, opts)
	if err := startSettle(b); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b
}

// startSettle starts b and waits out its probation, as the node does.
func startSettle(b *Backend) error {
	if err := b.Start(context.Background()); err != nil {
		return err
	}
	return b.Settle(context.Background())
}

// newBackend returns a Backend stopped when the test ends.
func newBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	b := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	return b
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// events collects what a Backend reports.
type events chan Event

func newEvents() events { return make(events, 256) }

func (ev events) on(e Event) {
	select {
	case ev <- e:
	default: // never block the supervisor, even in a broken test
	}
}

// next returns the next event, failing the test if none comes in time.
func (ev events) next(t *testing.T) Event {
	t.Helper()
	select {
	case e := <-ev:
		return e
	case <-time.After(wait):
		t.Fatal("no event")
		return Event{}
	}
}

// none checks that no event comes within d.
func (ev events) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-ev:
		t.Errorf("unexpected event %+v", e)
	case <-time.After(d):
	}
}

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}

// eventually fails the test unless cond holds within wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logHas waits until the log file contains s.
func logHas(t *testing.T, path, s string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%q in the log", s), func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), s)
	})
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, "pid file", func() bool {
		data, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(data), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	})
	return pid
}

func TestBackend_Start(t *testing.T) {
	t.Run("runs until stopped", func(t *testing.T) {
		b := newBackend(t, Options{Command: []string{"sleep", "60"}})
		if b.Running() || b.PID() != 0 {
			t.Fatal("running before Start")
		}
		if err := startSettle(b); err != nil {
			t.Fatalf("Start: %v", err)
		}
		pid := b.PID()
		if pid == 0 || !b.Running() || !alive(pid) {
			t.Fatalf("after Start: PID %d, Running %v, alive %v", pid, b.Running(), alive(pid))
		}
		if err := b.Stop(context.Background()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if b.PID() != 0 || b.Running() || alive(pid) {
			t.Fatalf("after Stop: PID %d, Running %v, alive %v", b.PID(), b.Running(), alive(pid))
		}
	})

	t.Run("twice", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		pid := b.PID()
		if err := startSettle(b); err != nil {
			t.Fatalf("second Start: %v", err)
		}
		if b.PID() != pid {
			t.Fatalf("second Start changed the PID from %d to %d", pid, b.PID())
		}
	})

	t.Run("again after stop", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		first := b.PID()
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := startSettle(b); err != nil {
			t.Fatal(err)
		}
		if b.PID() == 0 || b.PID() == first {
			t.Fatalf("PID %d after restart, first was %d", b.PID(), first)
		}
	})

	t.Run("program not found", func(t *testing.T) {
		b := newBackend(t, Options{Command: []string{"no-such-program-for-resilience-tests"}})
		err := startSettle(b)
		if err == nil || !strings.Contains(err.Error(), "executable file not found") {
			t.Fatalf("Start: %v, want not found", err)
		}
		if b.Running() {
			t.Fatal("running after a failed Start")
		}
	})

	t.Run("no command", func(t *testing.T) {
		if err := New(Options{}).Start(context.Background()); err == nil {
			t.Fatal("Start with no command: no error")
		}
	})

	t.Run("exits at once", func(t *testing.T) {
		ev := newEvents()
		log := filepath.Join(t.TempDir(), "svc.log")
		if err := os.WriteFile(log, []byte("line from an earlier run\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		b := newBackend(t, Options{
			Command: sh("echo starting; echo bad flag >&2; exit 3"),
			LogFile: log, OnEvent: ev.on,
		})
		b.probation = slowStart
		for i := range 2 { // a failed Start leaves it stopped, ready to try again
			err := startSettle(b)
			if want := "exited at once: exit status 3: starting; bad flag"; err == nil || err.Error() != want {
				t.Fatalf("Start %d: %v, want %q", i, err, want)
			}
			if b.Running() {
				t.Fatal("running after a failed Start")
			}
		}
		ev.none(t, 100*time.Millisecond)
	})

	t.Run("exits at once, quoting only its own output", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "svc.log")
		if err := os.WriteFile(log, []byte("line from an earlier run\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		b := newBackend(t, Options{Command: sh("exit 2"), LogFile: log})
		b.probation = slowStart
		err := startSettle(b)
		if want := "exited at once: exit status 2"; err == nil || err.Error() != want {
			t.Fatalf("Start: %v, want %q", err, want)
		}
		var exit *osexec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("Start: %v, want an ExitError with code 2", err)
		}
	})

	t.Run("Start does not wait out the probation; Exited tells early", func(t *testing.T) {
		b := newBackend(t, Options{Command: sh("exit 4")})
		b.probation = time.Hour
		begun := time.Now()
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if d := time.Since(begun); d > time.Second {
			t.Fatalf("Start took %s", d)
		}
		deadline := time.Now().Add(wait)
		for b.Exited() == nil {
			if time.Now().After(deadline) {
				t.Fatal("Exited never reported the death")
			}
			time.Sleep(time.Millisecond)
		}
		if b.Running() {
			t.Fatal("running after Exited reported the death")
		}
	})

	t.Run("exits at once with status 0", func(t *testing.T) {
		b := newBackend(t, Options{Command: []string{"true"}})
		b.probation = slowStart
		if err := startSettle(b); err == nil || err.Error() != "exited at once: exit status 0" {
			t.Fatalf("Start: %v", err)
		}
	})

	t.Run("log file", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "var", "log", "svc.log")
		b := newBackend(t, Options{Command: sh("echo to stdout; echo to stderr >&2; exec sleep 60"), LogFile: log})
		for i := range 2 {
			if err := startSettle(b); err != nil {
				t.Fatal(err)
			}
			logHas(t, log, strings.Repeat("to stdout\nto stderr\n", i+1))
			if err := b.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		st, err := os.Stat(log)
		if err != nil {
			t.Fatal(err)
		}
		if perm := st.Mode().Perm(); perm&^0o640 != 0 {
			t.Errorf("log file mode %v, want at most 0640", perm)
		}
	})

	t.Run("env and dir", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(dir, "svc.log")
		start(t, Options{
			Command: sh(`echo "$GREETING from $(pwd -P)"; exec sleep 60`),
			Env:     map[string]string{"GREETING": "hello"},
			Dir:     dir, LogFile: log,
		})
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		logHas(t, log, "hello from "+real+"\n")
	})

	t.Run("threads go away", func(t *testing.T) {
		// Pdeathsig fires when the thread that forked the child ends, and a
		// goroutine that exits locked to its thread makes the runtime end
		// that thread. OnEvent parks the supervisor right after a restart,
		// freeing its thread for such goroutines, were it not kept.
		ev := newEvents()
		parked := make(chan struct{})
		b := start(t, Options{Command: []string{"sleep", "60"}, RestartBackoff: time.Millisecond, OnEvent: func(e Event) {
			if e.Kind == EventRestarted {
				close(parked)
				time.Sleep(300 * time.Millisecond)
			}
			ev.on(e)
		}})
		if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-parked
		pid := b.PID()
		for range 100 {
			done := make(chan struct{})
			go func() {
				defer close(done)
				runtime.LockOSThread()
			}()
			<-done
		}
		if e := ev.next(t); e.Kind != EventExited {
			t.Fatalf("event %+v, want exited", e)
		}
		if e := ev.next(t); e.Kind != EventRestarted || e.PID != pid {
			t.Fatalf("event %+v, want restarted %d", e, pid)
		}
		ev.none(t, 300*time.Millisecond)
		if b.PID() != pid || !alive(pid) {
			t.Fatalf("child %d died with a thread of the agent", pid)
		}
	})

	t.Run("ctx already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b := newBackend(t, Options{Command: []string{"sleep", "60"}})
		if err := b.Start(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Start: %v, want context.Canceled", err)
		}
		if b.Running() {
			t.Fatal("running")
		}
	})
}

func TestBackend_Stop(t *testing.T) {
	t.Run("not started", func(t *testing.T) {
		if err := New(Options{Command: []string{"sleep", "60"}}).Stop(context.Background()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	})

	t.Run("twice", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		pid := b.PID()
		for i := range 2 {
			if err := b.Stop(context.Background()); err != nil {
				t.Fatalf("Stop %d: %v", i, err)
			}
		}
		if alive(pid) {
			t.Fatal("still alive")
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				if err := b.Stop(context.Background()); err != nil {
					t.Errorf("Stop: %v", err)
				}
			})
		}
		wg.Wait()
		if b.Running() {
			t.Fatal("running")
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		begin := time.Now()
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("Stop took %s: SIGTERM ignored?", d)
		}
	})

	t.Run("SIGTERM ignored", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "svc.log")
		b := start(t, Options{
			Command:   sh(`trap "" TERM; echo trapped; sleep 60`),
			LogFile:   log,
			StopGrace: 300 * time.Millisecond,
		})
		logHas(t, log, "trapped")
		pid := b.PID()
		begin := time.Now()
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		d := time.Since(begin)
		if d < 300*time.Millisecond || d > 5*time.Second {
			t.Errorf("Stop took %s, want the grace of 300ms", d)
		}
		if alive(pid) {
			t.Fatal("still alive")
		}
	})

	t.Run("ctx ends first", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "svc.log")
		b := start(t, Options{Command: sh(`trap "" TERM; echo trapped; sleep 60`), LogFile: log})
		logHas(t, log, "trapped")
		pid := b.PID()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		begin := time.Now()
		if err := b.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop: %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Stop took %s, the grace is 10s but ctx 200ms", d)
		}
		if alive(pid) || b.Running() {
			t.Fatal("still alive")
		}
	})

	t.Run("ctx already done", func(t *testing.T) {
		b := start(t, Options{Command: []string{"sleep", "60"}})
		pid := b.PID()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Stop(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Stop: %v, want context.Canceled", err)
		}
		// No time at all is no time for SIGTERM, but it is stopped.
		if alive(pid) || b.Running() {
			t.Fatal("still alive")
		}
	})

	t.Run("whole group", func(t *testing.T) {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "helper.pid")
		// The helper ignores SIGTERM; the leader does not: the helper must
		// still go, without waiting for the grace.
		b := start(t, Options{Command: sh(`(trap "" TERM; exec sleep 60) & echo $! > ` + pidFile + `; wait`)})
		helper := readPID(t, pidFile)
		if !alive(helper) {
			t.Fatal("helper not running")
		}
		begin := time.Now()
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Stop took %s", d)
		}
		eventually(t, "helper gone", func() bool { return !alive(helper) })
	})

	t.Run("while the process keeps dying", func(t *testing.T) {
		b := New(Options{Command: sh("sleep 0.1; exit 1"), RestartBackoff: 5 * time.Millisecond, RestartBackoffMax: 20 * time.Millisecond})
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // readers, for the race detector
			for {
				select {
				case <-done:
					return
				default:
					b.PID()
					b.Running()
					time.Sleep(time.Millisecond)
				}
			}
		})
		for i := range 8 {
			if err := startSettle(b); err != nil {
				t.Fatalf("Start %d: %v", i, err)
			}
			time.Sleep(time.Duration(i%4) * 70 * time.Millisecond)
			if err := b.Stop(context.Background()); err != nil {
				t.Fatalf("Stop %d: %v", i, err)
			}
			if b.Running() {
				t.Fatalf("running after Stop %d", i)
			}
		}
		close(done)
		wg.Wait()
	})
}

func TestBackend_restart(t *testing.T) {
	t.Run("after death", func(t *testing.T) {
		ev := newEvents()
		b := start(t, Options{Command: []string{"sleep", "60"}, RestartBackoff: 50 * time.Millisecond, OnEvent: ev.on})
		first := b.PID()
		if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e := ev.next(t)
		if e.Kind != EventExited || e.PID != first || e.Err == nil || e.Err.Error() != "signal: killed" ||
			e.RestartIn != 50*time.Millisecond || e.At.IsZero() {
			t.Fatalf("first event %+v, want exited of %d by signal: killed, restart in 50ms", e, first)
		}
		e = ev.next(t)
		if e.Kind != EventRestarted || e.PID == 0 || e.PID == first {
			t.Fatalf("second event %+v, want restarted with a new PID", e)
		}
		if b.PID() != e.PID || !alive(e.PID) {
			t.Fatalf("PID %d, event says %d", b.PID(), e.PID)
		}
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		ev.none(t, 200*time.Millisecond)
	})

	t.Run("exit status and log in the event", func(t *testing.T) {
		ev := newEvents()
		log := filepath.Join(t.TempDir(), "svc.log")
		start(t, Options{Command: sh("sleep 0.2; echo lost the database; exit 4"), LogFile: log, OnEvent: ev.on})
		e := ev.next(t)
		if want := "exit status 4: lost the database"; e.Kind != EventExited || e.Err == nil || e.Err.Error() != want {
			t.Fatalf("event %+v, want exited with %q", e, want)
		}
	})

	t.Run("backoff doubles", func(t *testing.T) {
		ev := newEvents()
		start(t, Options{
			Command:        sh("sleep 0.2; exit 1"),
			RestartBackoff: 50 * time.Millisecond, RestartBackoffMax: 200 * time.Millisecond,
			OnEvent: ev.on,
		})
		var got []time.Duration
		for len(got) < 4 {
			if e := ev.next(t); e.Kind == EventExited {
				got = append(got, e.RestartIn)
			}
		}
		want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("backoffs %v, want %v", got, want)
		}
	})

	t.Run("backoff resets once stable", func(t *testing.T) {
		ev := newEvents()
		b := New(Options{
			Command:        sh("sleep 0.2; exit 1"),
			RestartBackoff: 50 * time.Millisecond, RestartBackoffMax: time.Second,
			OnEvent: ev.on,
		})
		b.stableAfter = 100 * time.Millisecond
		if err := startSettle(b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop(context.Background()) })
		for n := 0; n < 3; {
			if e := ev.next(t); e.Kind == EventExited {
				if e.RestartIn != 50*time.Millisecond {
					t.Fatalf("backoff %s after a stable run, want 50ms", e.RestartIn)
				}
				n++
			}
		}
	})

	t.Run("restart fails, then works", func(t *testing.T) {
		ev := newEvents()
		prog := filepath.Join(t.TempDir(), "svc")
		script := []byte("#!/bin/sh\nexec sleep 60\n")
		if err := os.WriteFile(prog, script, 0o755); err != nil {
			t.Fatal(err)
		}
		b := start(t, Options{Command: []string{prog}, RestartBackoff: 50 * time.Millisecond, OnEvent: ev.on})
		if err := os.Remove(prog); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := ev.next(t); e.Kind != EventExited {
			t.Fatalf("event %+v, want exited", e)
		}
		e := ev.next(t)
		if e.Kind != EventRestartFailed || !errors.Is(e.Err, os.ErrNotExist) || e.RestartIn != 100*time.Millisecond {
			t.Fatalf("event %+v, want restart_failed with not found, next in 100ms", e)
		}
		if err := os.WriteFile(prog, script, 0o755); err != nil {
			t.Fatal(err)
		}
		for {
			e := ev.next(t)
			if e.Kind == EventRestarted {
				break
			}
			if e.Kind != EventRestartFailed {
				t.Fatalf("event %+v, want restart_failed or restarted", e)
			}
		}
		if !b.Running() {
			t.Fatal("not running after restarted")
		}
	})

	t.Run("stop during backoff", func(t *testing.T) {
		ev := newEvents()
		b := start(t, Options{Command: []string{"sleep", "60"}, RestartBackoff: time.Minute, OnEvent: ev.on})
		if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if e := ev.next(t); e.Kind != EventExited {
			t.Fatalf("event %+v, want exited", e)
		}
		if b.Running() || b.PID() != 0 {
			t.Fatal("running while waiting to restart")
		}
		// Started, though waiting: Start does nothing.
		if err := startSettle(b); err != nil || b.Running() {
			t.Fatalf("Start during backoff: %v, running %v", err, b.Running())
		}
		begin := time.Now()
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("Stop took %s", d)
		}
		ev.none(t, 100*time.Millisecond)
	})

	t.Run("helpers of a dead process are killed", func(t *testing.T) {
		ev := newEvents()
		pidFile := filepath.Join(t.TempDir(), "helper.pid")
		start(t, Options{
			Command:        sh(`sleep 60 & echo $! > ` + pidFile + `; sleep 0.2; exit 1`),
			RestartBackoff: time.Minute, OnEvent: ev.on,
		})
		helper := readPID(t, pidFile)
		if e := ev.next(t); e.Kind != EventExited {
			t.Fatalf("event %+v, want exited", e)
		}
		eventually(t, "helper gone", func() bool { return !alive(helper) })
	})
}

// TestBackend_pdeathsig kills an agent with SIGKILL: its child must die too,
// or it would hold its port against the restarted agent.
func TestBackend_pdeathsig(t *testing.T) {
	agent := osexec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), agentEnv+"=1")
	agent.Stderr = os.Stderr
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		t.Fatalf("agent: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || child <= 0 {
		t.Fatalf("agent said %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if !alive(child) {
		t.Fatal("child not running")
	}
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	eventually(t, "child gone with the agent", func() bool { return !alive(child) })
}
