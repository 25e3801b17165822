// Package exec runs a service as a child process of the agent and keeps it
// running: it logs the output to a file, restarts the process with backoff
// when it dies, and stops it with SIGTERM then SIGKILL. The child and its
// process group never outlive the agent, even when the agent is SIGKILLed,
// so that a restarted agent does not find its port held by an orphan.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xivo-resilience/resilience/internal/service"
)

// Defaults used when Options leave a duration at zero.
const (
	DefaultStopGrace         = 10 * time.Second
	DefaultRestartBackoff    = 500 * time.Millisecond
	DefaultRestartBackoffMax = 30 * time.Second
)

const (
	// probation is how long Start watches a new process: one that is gone
	// by then failed to start (bad flag, bad config) and Start says so.
	probation = 50 * time.Millisecond
	// stableAfter is how long a process must stay up for its next death
	// to be retried after the base backoff again.
	stableAfter = 10 * time.Second
	// tailBytes bounds how much of the log is read back for an error.
	tailBytes = 4096
	// tailLines is how many lines of the log an error quotes.
	tailLines = 2
)

// Event kinds, as passed to Options.OnEvent.
const (
	// EventExited: the process died while supervised; Err says how, PID is
	// the dead process and RestartIn the pause before the next attempt.
	EventExited = "exited"
	// EventRestarted: a new process runs; PID is its id.
	EventRestarted = "restarted"
	// EventRestartFailed: a new process could not be started; Err says why
	// and RestartIn is the pause before the next attempt.
	EventRestartFailed = "restart_failed"
)

// Event tells what supervision did, for logs, metrics and the audit trail.
type Event struct {
	Kind      string // EventExited, EventRestarted or EventRestartFailed
	Err       error
	PID       int
	RestartIn time.Duration
	At        time.Time
}

// Options configure a Backend.
type Options struct {
	// Name identifies the service to whoever holds the Options; the
	// backend itself does not use it (callers name the service in errors).
	Name string
	// Command is the argv; Command[0] is looked up in PATH.
	Command []string
	// Env is added to the agent's environment (and wins over it).
	Env map[string]string
	// Dir is the working directory; empty means the agent's.
	Dir string
	// LogFile receives stdout and stderr, appended; its folder is created.
	// Empty discards the output, and errors then cannot quote it.
	LogFile string
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL.
	StopGrace time.Duration
	// RestartBackoff is the first pause before restarting a dead process;
	// it doubles on each quick death up to RestartBackoffMax, and is back
	// to RestartBackoff once a process stayed up for 10s.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// OnEvent, if set, is called on the supervising goroutine, in order.
	// It delays the next restart while it runs, and must not call Stop
	// (Stop waits for that goroutine): hand the event off if need be.
	OnEvent func(Event)
}

// Backend is a supervised child process. Its methods are safe for
// concurrent use.
type Backend struct {
	opts Options
	// Fields so that tests need neither wait 10s nor race a loaded machine.
	probation, stableAfter time.Duration

	// sem serializes Start and Stop; a channel so that waiting honours ctx.
	sem chan struct{}

	mu  sync.Mutex
	cur *run // guarded by mu; nil when not started
}

var (
	_ service.Backend = (*Backend)(nil)
	_ service.Settler = (*Backend)(nil)
)

// New returns a stopped Backend. It starts nothing.
func New(opts Options) *Backend {
	opts.Command = append([]string(nil), opts.Command...)
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = DefaultRestartBackoff
	}
	if opts.RestartBackoffMax <= 0 {
		opts.RestartBackoffMax = DefaultRestartBackoffMax
	}
	opts.RestartBackoffMax = max(opts.RestartBackoffMax, opts.RestartBackoff)
	return &Backend{opts: opts, probation: probation, stableAfter: stableAfter, sem: make(chan struct{}, 1)}
}

// run is one supervision, from Start to Stop. Its goroutine owns the
// processes: it starts them, reaps them and restarts them.
type run struct {
	b    *Backend
	stop chan struct{} // closed by Stop: no more restarts
	done chan struct{} // closed when the last process is reaped

	// guarded by b.mu
	stopping  bool
	confirmed bool  // Settle saw the first process survive probation
	first     *proc // the process Start started
	proc      *proc // the live process; nil while in backoff
}

// proc is one process.
type proc struct {
	cmd      *osexec.Cmd
	pid      int
	started  time.Time
	logStart int64         // size of the log file when it started
	reaped   chan struct{} // closed once reaped; err is set then
	err      error         // from Wait
	exited   bool          // guarded by b.mu; set before reaping
}

// PID returns the id of the running process, 0 when none runs (stopped, or
// waiting to restart). Its process group has the same id.
func (b *Backend) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil || b.cur.proc == nil {
		return 0
	}
	return b.cur.proc.pid
}

// Running reports whether a process is running now.
func (b *Backend) Running() bool { return b.PID() != 0 }

// Start starts the process and supervises it until Stop. It returns as
// soon as the process is started: whether it survived its first moments
// (a program that fails at once: bad flag, port in use) is for Exited and
// Settle to tell, so that starting many services does not wait out a
// probation for each in turn. Starting a started backend does nothing,
// even if its process is waiting to restart.
func (b *Backend) Start(ctx context.Context) error {
	if len(b.opts.Command) == 0 || b.opts.Command[0] == "" {
		return errors.New("no command")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.acquire(ctx); err != nil {
		return err
	}
	defer b.release()

	b.mu.Lock()
	started := b.cur != nil
	b.mu.Unlock()
	if started {
		return nil
	}

	r := &run{b: b, stop: make(chan struct{}), done: make(chan struct{})}
	first := make(chan spawned, 1)
	go r.supervise(first)
	s := <-first
	if s.err != nil {
		<-r.done
		return s.err
	}
	b.mu.Lock()
	r.first = s.p
	b.cur = r
	b.mu.Unlock()
	return nil
}

// Exited reports, without waiting, that the process of the last Start
// exited before Settle confirmed it, and how. Readiness checks call it so
// that a program that died at once fails at once.
func (b *Backend) Exited() error {
	b.mu.Lock()
	r := b.cur
	dead := r != nil && !r.confirmed && r.first.exited
	b.mu.Unlock()
	if !dead {
		return nil
	}
	return b.failStart(r)
}

// Settle waits until the process of the last Start has lived through its
// probation, then confirms it: from then on a death means a restart. A
// process gone by then failed to start, and Settle says how, quoting its
// log.
func (b *Backend) Settle(ctx context.Context) error {
	b.mu.Lock()
	r := b.cur
	b.mu.Unlock()
	if r == nil {
		return nil
	}
	t := time.NewTimer(time.Until(r.first.started.Add(b.probation)))
	defer t.Stop()
	select {
	case <-r.first.reaped:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	if !r.first.exited || r.confirmed {
		r.confirmed = true
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	return b.failStart(r)
}

// failStart ends a run whose first process died unconfirmed: its
// supervisor gives up on its own.
func (b *Backend) failStart(r *run) error {
	<-r.done
	b.mu.Lock()
	if b.cur == r {
		b.cur = nil
	}
	b.mu.Unlock()
	return fmt.Errorf("exited at once: %w", b.exitError(r.first))
}

// Stop stops supervision, sends SIGTERM to the process group, and SIGKILL
// after StopGrace if the process is still there. It returns once the process
// is reaped; whatever is left of the group once the process is gone is
// killed. If ctx ends first (or is done already), it sends SIGKILL at once
// and returns ctx's error once the process is reaped. Stopping a stopped
// backend does nothing.
func (b *Backend) Stop(ctx context.Context) error {
	if err := b.acquire(ctx); err != nil {
		return err
	}
	defer b.release()
	b.mu.Lock()
	r := b.cur
	b.mu.Unlock()
	if r == nil {
		return nil
	}
	err := r.halt(ctx)
	b.clear()
	return err
}

// acquire takes the right to start or stop. A free one is taken even if
// ctx is done, so that Stop with a done ctx still kills the process.
func (b *Backend) acquire(ctx context.Context) error {
	select {
	case b.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case b.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Backend) release() { <-b.sem }

func (b *Backend) clear() {
	b.mu.Lock()
	b.cur = nil
	b.mu.Unlock()
}

// halt ends the run: no more restarts, SIGTERM, SIGKILL after the grace or
// as soon as ctx ends; it returns once the supervisor is done.
func (r *run) halt(ctx context.Context) error {
	r.b.mu.Lock()
	r.stopping = true
	r.b.mu.Unlock()
	close(r.stop)
	if ctx.Err() != nil {
		r.signal(syscall.SIGKILL)
		<-r.done
		return ctx.Err()
	}
	r.signal(syscall.SIGTERM)
	t := time.NewTimer(r.b.opts.StopGrace)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		r.signal(syscall.SIGKILL)
		<-r.done
		return nil
	case <-ctx.Done():
		r.signal(syscall.SIGKILL)
		<-r.done
		return ctx.Err()
	}
}

// signal sends sig to the process group of the live process, if any. The
// process is unreaped as long as r.proc points to it, so its id (which is
// also the group's) cannot have been reused.
func (r *run) signal(sig syscall.Signal) {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.proc != nil {
		_ = unix.Kill(-r.proc.pid, sig)
	}
}

type spawned struct {
	p   *proc
	err error
}

// errStopping stops a restart that Stop overtook.
var errStopping = errors.New("stopping")

// supervise starts the first process, reports it on first, then reaps and
// restarts processes until the run is stopped.
//
// It keeps its OS thread for its whole life because Pdeathsig fires when
// the thread that forked the child ends, not the process: were the runtime
// to retire that thread, the child would be killed with the agent alive.
func (r *run) supervise(first chan<- spawned) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(r.done)

	p, err := r.spawn()
	first <- spawned{p, err}
	if err != nil {
		return
	}
	opts := r.b.opts
	backoff := opts.RestartBackoff
	next := func() time.Duration {
		d := backoff
		backoff = min(2*backoff, opts.RestartBackoffMax)
		return d
	}
	for {
		if stop := r.reap(p); stop {
			return
		}
		if time.Since(p.started) >= r.b.stableAfter {
			backoff = opts.RestartBackoff
		}
		delay := next()
		r.emit(Event{Kind: EventExited, Err: r.b.exitError(p), PID: p.pid, RestartIn: delay})
		for {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.stop:
				t.Stop()
				return
			}
			p, err = r.spawn()
			if errors.Is(err, errStopping) {
				return
			}
			if err == nil {
				r.emit(Event{Kind: EventRestarted, PID: p.pid})
				break
			}
			delay = next()
			r.emit(Event{Kind: EventRestartFailed, Err: err, RestartIn: delay})
		}
	}
}

func (r *run) emit(e Event) {
	if r.b.opts.OnEvent == nil {
		return
	}
	e.At = time.Now()
	r.b.opts.OnEvent(e)
}

// spawn starts a process and makes it the live one, unless Stop came first.
func (r *run) spawn() (*proc, error) {
	opts := r.b.opts
	cmd := osexec.Command(opts.Command[0], opts.Command[1:]...)
	cmd.Dir = opts.Dir
	cmd.Env = service.Environ(opts.Env)
	// Setpgid: Stop signals the whole group, helpers included.
	// Pdeathsig: the child dies with the agent (see supervise).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, reaped: make(chan struct{})}
	if opts.LogFile != "" {
		f, size, err := openLog(opts.LogFile)
		if err != nil {
			return nil, err
		}
		// The child has its own copy once started; ours is not needed.
		defer f.Close()
		cmd.Stdout, cmd.Stderr, p.logStart = f, f, size
	}

	// Hold mu across the fork so that Stop either sees the process or
	// stops it from being started: it is never missed.
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.stopping {
		return nil, errStopping
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.pid, p.started = cmd.Process.Pid, time.Now()
	r.proc = p
	return p, nil
}

// reap waits for p to exit, kills what is left of its process group, and
// reaps it. It reports whether supervision should end: Stop was called, or
// Start has not confirmed the process yet (it then reports the failure).
func (r *run) reap(p *proc) (stop bool) {
	// Wait for the exit without reaping, so that the id stays ours while
	// we kill the group and drop the process from r.proc.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	// Leftover helpers would hold ports and files the next process needs.
	_ = unix.Kill(-p.pid, syscall.SIGKILL)
	r.b.mu.Lock()
	r.proc = nil
	p.exited = true
	stop = r.stopping || !r.confirmed
	r.b.mu.Unlock()
	p.err = p.cmd.Wait()
	close(p.reaped)
	return stop
}

// exitError describes how p ended, with the last lines it logged.
func (b *Backend) exitError(p *proc) error {
	err := p.err
	if err == nil {
		err = errors.New("exit status 0")
	}
	if b.opts.LogFile == "" {
		return err
	}
	if tail := lastLines(b.opts.LogFile, p.logStart); tail != "" {
		return fmt.Errorf("%w: %s", err, tail)
	}
	return err
}

// openLog opens path for appending, creating it and its folder, and
// returns its size so that errors quote only what the new process wrote.
func openLog(path string) (*os.File, int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, 0, fmt.Errorf("log file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("log file: %w", err)
	}
	return f, st.Size(), nil
}

// lastLines returns the last non-empty lines of path written after offset
// from, joined with "; ", reading at most tailBytes. It returns "" when
// there is nothing to quote or the file cannot be read.
func lastLines(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= from {
		return ""
	}
	start := max(from, st.Size()-tailBytes)
	buf := make([]byte, st.Size()-start)
	n, _ := f.ReadAt(buf, start)
	text := string(buf[:n])
	if start > from {
		// Drop the first line, cut in the middle.
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[i+1:]
		}
	}
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return strings.Join(lines, "; ")
}
