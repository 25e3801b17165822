// Package command starts and stops a service managed elsewhere (systemd, an
// init script, xivo-service) by running the commands an operator would
// type. Each command runs with /bin/sh -c, so pipes and && work as typed.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xivo-resilience/resilience/internal/service"
)

const (
	// tailBytes bounds how much output is kept for an error message.
	tailBytes = 4096
	// tailLines is how many lines of output an error quotes.
	tailLines = 2
	// waitDelay is how long a finished command's output pipe is drained;
	// a daemon the command left behind may hold it open forever.
	waitDelay = time.Second
)

// Options configure a Backend.
type Options struct {
	// Start starts the service, e.g. "systemctl start asterisk".
	Start string
	// Stop stops the service.
	Stop string
	// Status, if set, exits 0 when the service runs; Start then does
	// nothing, so starting a running unit does not restart it.
	Status string
	// Env is added to the agent's environment (and wins over it).
	Env map[string]string
	// Dir is the working directory; empty means the agent's.
	Dir string
	// LogFile, if set, receives the output of Start and Stop, appended;
	// its folder is created. Status output is not logged: it may be
	// polled often and says nothing new.
	LogFile string
}

// Backend runs the configured commands. It keeps no state of its own: the
// unit's manager knows whether it runs. A daemon launched by a command must
// not keep the command's stdout and stderr open (redirect them), or its
// writes fail once the command has returned.
type Backend struct {
	opts Options
}

var _ service.Backend = (*Backend)(nil)

// New returns a Backend for opts. It runs nothing.
func New(opts Options) *Backend { return &Backend{opts: opts} }

// Start runs the Start command, unless the Status command says the service
// already runs.
func (b *Backend) Start(ctx context.Context) error {
	if b.opts.Start == "" {
		return errors.New("no start command")
	}
	if b.opts.Status != "" {
		running, err := b.Running(ctx)
		if err != nil {
			return err
		}
		if running {
			return nil
		}
	}
	return b.run(ctx, b.opts.Start, b.opts.LogFile)
}

// Stop runs the Stop command.
func (b *Backend) Stop(ctx context.Context) error {
	if b.opts.Stop == "" {
		return errors.New("no stop command")
	}
	return b.run(ctx, b.opts.Stop, b.opts.LogFile)
}

// Running runs the Status command: exit 0 is running, any other exit status
// is not. The error is for a command that could not run or was cut short.
func (b *Backend) Running(ctx context.Context) (bool, error) {
	if b.opts.Status == "" {
		return false, errors.New("no status command")
	}
	err := b.run(ctx, b.opts.Status, "")
	var exit *osexec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && ctx.Err() == nil:
		return false, nil
	}
	return false, err
}

// run runs script with sh -c, its whole process group killed if ctx ends.
// A failure names the script, the exit status and the last output lines.
func (b *Backend) run(ctx context.Context, script, logFile string) error {
	cmd := osexec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Dir = b.opts.Dir
	cmd.Env = service.Environ(b.opts.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	tail := &tailWriter{}
	var out io.Writer = tail
	if logFile != "" {
		f, err := openLog(logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(f, tail)
	}
	// The same writer for both, so exec uses one pipe and keeps the order.
	cmd.Stdout, cmd.Stderr = out, out

	err := cmd.Run()
	if errors.Is(err, osexec.ErrWaitDelay) {
		// It succeeded, but something it started still holds its output.
		err = nil
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	if last := tail.lastLines(); last != "" {
		return fmt.Errorf("run %q: %w: %s", script, err, last)
	}
	return fmt.Errorf("run %q: %w", script, err)
}

// tailWriter keeps the last tailBytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	cut bool // bytes were dropped from the front
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(p) > tailBytes {
		p, w.cut, w.buf = p[len(p)-tailBytes:], true, w.buf[:0]
	}
	if drop := len(w.buf) + len(p) - tailBytes; drop > 0 {
		w.buf, w.cut = append(w.buf[:0], w.buf[drop:]...), true
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// lastLines returns the last non-empty lines, joined with "; ".
func (w *tailWriter) lastLines() string {
	w.mu.Lock()
	text := string(w.buf)
	cut := w.cut
	w.mu.Unlock()
	if cut {
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

func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}
