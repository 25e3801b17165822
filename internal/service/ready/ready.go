// Package ready holds the readiness checks of a service: a service is
// running only once it answers, not as soon as its process exists. Each
// check is one attempt bounded by its ctx; service.Unit does the polling.
package ready

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xivo-resilience/resilience/internal/service"
)

var (
	_ service.Checker = TCP{}
	_ service.Checker = HTTP{}
	_ service.Checker = Command{}
)

// TCP is ready when Address ("host:port") accepts a connection.
type TCP struct {
	Address string
}

// Check dials Address once and closes the connection.
func (c TCP) Check(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return err
	}
	return conn.Close()
}

// HTTP is ready when a GET of URL answers with a 2xx status.
type HTTP struct {
	URL string
	// Client, if set, is used as is. The default goes direct (no proxy
	// from the environment: a local check must not leave the host) and
	// keeps no idle connections between checks.
	Client *http.Client
}

// bodyPeek bounds what is read of a body: enough for an error message and
// to let a small answer finish, not a whole page.
const bodyPeek = 64 << 10

// Check sends one GET. Any status outside 2xx is an error naming it, with
// the first line of the body when it has one.
func (c HTTP) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	client := c.Client
	if client == nil {
		// A fresh transport per check: without keep-alives it holds
		// nothing once the check returns, and HTTP stays a plain value.
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		req.Close = true
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := bufio.NewReader(io.LimitReader(resp.Body, bodyPeek))
	line, _ := body.ReadString('\n')
	_, _ = io.Copy(io.Discard, body) // so that the connection can be reused
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	err = fmt.Errorf("GET %s: status %s", c.URL, resp.Status)
	if line = truncate(strings.TrimSpace(line), 200); line != "" {
		err = fmt.Errorf("%w: %s", err, line)
	}
	return err
}

// Command is ready when Command, run with /bin/sh -c, exits 0.
type Command struct {
	Command string
	// Env is added to the agent's environment (and wins over it).
	Env map[string]string
	// Dir is the working directory; empty means the agent's.
	Dir string
}

const (
	// tailBytes bounds how much output is kept for an error message.
	tailBytes = 4096
	// waitDelay is how long a finished check's output pipe is drained.
	waitDelay = time.Second
)

// Check runs the command once; its process group is killed when ctx ends.
// A failure names the exit status and the last line of output.
func (c Command) Check(ctx context.Context) error {
	if c.Command == "" {
		return errors.New("no command")
	}
	cmd := osexec.CommandContext(ctx, "/bin/sh", "-c", c.Command)
	cmd.Dir = c.Dir
	cmd.Env = service.Environ(c.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	out := &tailWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if err == nil || errors.Is(err, osexec.ErrWaitDelay) {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	if last := out.lastLine(); last != "" {
		return fmt.Errorf("%w: %s", err, last)
	}
	return err
}

// tailWriter keeps the last tailBytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	w.buf = append(w.buf, p...)
	if len(w.buf) > tailBytes {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-tailBytes:]...)
	}
	return n, nil
}

// lastLine returns the last non-empty line, at most 200 bytes of it.
func (w *tailWriter) lastLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := strings.Split(string(w.buf), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return truncate(l, 200)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
