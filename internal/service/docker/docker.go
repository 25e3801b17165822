// Package docker starts and stops a service that runs as a container, the
// way XiVO CC runs xuc and xucmgt. The installer creates the container once;
// the agent only starts, stops and inspects it by name, so that a failover
// never has to know an image, a volume or a port. It speaks the Docker Engine
// API over the daemon's unix socket with net/http: three calls do not
// justify the Docker SDK and the dependency tree it brings.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xivo-resilience/resilience/internal/service"
)

// Defaults used when Options leave a field empty.
const (
	DefaultSocket      = "/var/run/docker.sock"
	DefaultStopTimeout = 10 * time.Second
)

const (
	// maxBody bounds what is read of an answer: an inspect is a few KiB
	// (the health log keeps five probes of at most 4 KiB each), and a
	// confused peer on the socket must not make the agent buffer without end.
	maxBody = 1 << 20
	// callTimeout bounds the calls other than stop when ctx does not: a
	// daemon that accepts the connection and never answers (stuck on its
	// own lock, as dockerd can be) must not hang a node's transition.
	callTimeout = 30 * time.Second
	// stopMargin is what the stop call may take beyond StopTimeout: once
	// the grace period is over the engine still has to kill the process,
	// wait for it and release the container.
	stopMargin = 10 * time.Second
	// testedAPIVersion is the API version this package was tested against
	// (Debian 12's docker.io, Engine 20.10). It is asked for even from a
	// newer engine, so that nothing changes under us, unless the engine no
	// longer accepts it (Engine 29 requires 1.44 or newer).
	testedAPIVersion = "1.41"
	// outputBytes and outputLines bound how much of a health probe's
	// output an error quotes.
	outputBytes = 512
	outputLines = 2
)

// ErrNoSuchContainer matches, with errors.Is, the error of any call on a
// container the engine does not know, so that a caller can tell "not
// created yet" from "created and stopped".
var ErrNoSuchContainer = errors.New("no such container")

// Options configure a Backend.
type Options struct {
	// Container is the container's name or id.
	Container string
	// Socket is the daemon's unix socket, as a path or a unix:// URL;
	// empty means DefaultSocket.
	Socket string
	// StopTimeout is how long the engine waits after the stop signal
	// before it kills the process; it is passed in whole seconds, rounded
	// up. Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// APIVersion, such as "1.41", fixes the version of the API used. Empty
	// means ask the engine once (GET /version) and use testedAPIVersion,
	// or the engine's minimum if it is newer.
	APIVersion string
}

// Backend starts and stops one existing container. It keeps no state of the
// container: every call asks the engine, which is the only one to know
// (an operator may have run docker stop in between).
type Backend struct {
	opts   Options
	socket string
	optErr error // Options the calls cannot work with
	client *http.Client

	mu      sync.Mutex
	version string // "v1.41" once known
}

var _ service.Backend = (*Backend)(nil)

// New returns a Backend for opts. It does not contact the engine: a daemon
// that is down at start-up is an error of the first call, not of the
// configuration.
func New(opts Options) *Backend {
	b := &Backend{opts: opts}
	b.socket, b.optErr = socketPath(opts.Socket)
	if v := strings.TrimPrefix(opts.APIVersion, "v"); v != "" {
		b.version = "v" + v
		if _, _, ok := parseVersion(v); !ok && b.optErr == nil {
			b.optErr = fmt.Errorf("docker API version %q: want major.minor, such as %s", opts.APIVersion, testedAPIVersion)
		}
	}
	b.client = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", b.socket)
			},
			// Calls are rare and a unix dial costs microseconds; without
			// idle connections no goroutine outlives a call, and the
			// Backend needs no Close.
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// Container returns the container's name or id, as configured.
func (b *Backend) Container() string { return b.opts.Container }

// Start starts the container and returns once the engine has launched its
// process, not once it serves: pair the unit with Ready for that. Starting
// a running container is not an error (the engine answers 304).
func (b *Backend) Start(ctx context.Context) error {
	status, body, err := b.call(ctx, http.MethodPost, "/start", nil, callTimeout)
	if err != nil {
		return err
	}
	if status == http.StatusNotModified || ok(status) {
		return nil
	}
	return b.engineError(status, body)
}

// Stop stops the container: the engine sends the image's stop signal
// (SIGTERM unless the image says otherwise) and kills the process once
// StopTimeout has passed. Stop returns once the container is stopped; the
// call may take StopTimeout plus a margin, unless ctx ends first. Stopping
// a stopped container is not an error (the engine answers 304).
//
// If ctx ends first, Stop returns at once but the engine goes on stopping
// the container: Engine 20.10 does not cancel a stop when its caller hangs
// up.
func (b *Backend) Stop(ctx context.Context) error {
	timeout := b.opts.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	query := url.Values{"t": {strconv.Itoa(secs)}}
	status, body, err := b.call(ctx, http.MethodPost, "/stop", query, time.Duration(secs)*time.Second+stopMargin)
	if err != nil {
		return err
	}
	if status == http.StatusNotModified || ok(status) {
		return nil
	}
	return b.engineError(status, body)
}

// State is what the engine says of a container.
type State struct {
	// Running is true when the container's process runs and is not
	// paused or restarting, that is when Status is "running". (The
	// engine's own Running flag stays true while a container is paused.)
	Running bool
	// Status is the engine's: created, running, paused, restarting,
	// removing, exited or dead.
	Status string
	// Health is "" when the container has no healthcheck, else starting,
	// healthy or unhealthy. The engine marks a stopped container unhealthy.
	Health string
	// HealthOutput is the output of the latest health probe, its last
	// lines only, for an error message.
	HealthOutput string
	// ExitCode is the last exit code of the process; 127 or 126 with
	// Error set when the engine could not launch it.
	ExitCode int
	// StartedAt is when the process last started; zero if never.
	StartedAt time.Time
	// Error is the engine's error of the last start, if it failed.
	Error string
}

// Inspect asks the engine for the container's state.
func (b *Backend) Inspect(ctx context.Context) (State, error) {
	status, body, err := b.call(ctx, http.MethodGet, "/json", nil, callTimeout)
	if err != nil {
		return State{}, err
	}
	if !ok(status) {
		return State{}, b.engineError(status, body)
	}
	var c struct {
		State struct {
			Status    string
			ExitCode  int
			Error     string
			StartedAt time.Time
			Health    *struct {
				Status string
				Log    []struct{ Output string }
			}
		}
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return State{}, fmt.Errorf("container %s: bad inspect answer: %w", b.opts.Container, err)
	}
	s := State{
		Running:   c.State.Status == "running",
		Status:    c.State.Status,
		ExitCode:  c.State.ExitCode,
		StartedAt: c.State.StartedAt,
		Error:     c.State.Error,
	}
	if h := c.State.Health; h != nil && h.Status != "none" {
		s.Health = h.Status
		if n := len(h.Log); n > 0 {
			s.HealthOutput = lastLines(h.Log[n-1].Output)
		}
	}
	return s, nil
}

// Running reports whether the container runs (State.Running).
func (b *Backend) Running(ctx context.Context) (bool, error) {
	s, err := b.Inspect(ctx)
	return s.Running, err
}

// call sends one request about the container (op is the path after
// /containers/{name}) and returns the status and the body. The call is
// bounded by timeout as well as ctx. The errors are for an operator: the
// daemon is not there, does not answer, or ctx ended.
func (b *Backend) call(ctx context.Context, method, op string, query url.Values, timeout time.Duration) (int, []byte, error) {
	if strings.TrimPrefix(b.opts.Container, "/") == "" {
		return 0, nil, errors.New("no container name")
	}
	if b.optErr != nil {
		return 0, nil, b.optErr
	}
	version, err := b.apiVersion(ctx)
	if err != nil {
		return 0, nil, err
	}
	// The engine names containers "/xuc"; a slash in the path would be
	// escaped, and the engine redirects rather than route %2F.
	name := strings.TrimPrefix(b.opts.Container, "/")
	path := "/" + version + "/containers/" + url.PathEscape(name) + op
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	status, body, err := b.do(ctx, method, path, timeout)
	if err != nil && ctx.Err() != nil {
		// Name the container: the bare ctx error does not say what was
		// cut short.
		return 0, nil, fmt.Errorf("container %s: %w", b.opts.Container, err)
	}
	return status, body, err
}

// errNoAnswer is the cause of a call's own timeout, to tell it from ctx's.
var errNoAnswer = errors.New("no answer")

// do sends one request to the engine, path included the version prefix.
func (b *Backend) do(ctx context.Context, method, path string, timeout time.Duration) (int, []byte, error) {
	cctx, cancel := context.WithTimeoutCause(ctx, timeout, errNoAnswer)
	defer cancel()
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(cctx, method, "http://docker"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := b.client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err == nil && len(body) > maxBody {
			return 0, nil, fmt.Errorf("docker daemon at %s: answer larger than %d KiB", b.socket, maxBody>>10)
		}
		if err == nil {
			return resp.StatusCode, body, nil
		}
	}
	// Drop the *url.Error wrapper: it quotes the placeholder URL.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var operr *net.OpError
	switch {
	case ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case context.Cause(cctx) == errNoAnswer:
		return 0, nil, fmt.Errorf("docker daemon at %s did not answer within %s", b.socket, timeout)
	case errors.As(err, &operr) && operr.Op == "dial":
		hint := ""
		if errors.Is(err, fs.ErrPermission) {
			hint = " (is the agent's user in the docker group?)"
		}
		return 0, nil, fmt.Errorf("docker daemon not reachable at %s: %w%s", b.socket, operr.Err, hint)
	}
	return 0, nil, fmt.Errorf("docker daemon at %s: %w", b.socket, err)
}

// apiVersion returns the path prefix of the API version to use, asking the
// engine the first time. A failed negotiation is not remembered: the next
// call tries again, as the daemon may have been restarting.
func (b *Backend) apiVersion(ctx context.Context) (string, error) {
	b.mu.Lock()
	v := b.version
	b.mu.Unlock()
	if v != "" {
		return v, nil
	}
	status, body, err := b.do(ctx, http.MethodGet, "/version", callTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("container %s: %w", b.opts.Container, err)
		}
		return "", err
	}
	if !ok(status) {
		return "", fmt.Errorf("docker daemon at %s: GET /version: %s", b.socket, message(status, body))
	}
	var ver struct{ APIVersion, MinAPIVersion string }
	if err := json.Unmarshal(body, &ver); err != nil {
		return "", fmt.Errorf("docker daemon at %s: bad /version answer: %w", b.socket, err)
	}
	v = "v" + negotiate(ver.APIVersion, ver.MinAPIVersion)
	b.mu.Lock()
	b.version = v
	b.mu.Unlock()
	return v, nil
}

// negotiate picks testedAPIVersion, lowered to what the engine supports or
// raised to its minimum. A version it cannot read is taken as supported.
func negotiate(max, min string) string {
	v := testedAPIVersion
	if less(max, v) {
		v = max
	}
	if less(v, min) {
		v = min
	}
	return v
}

// less compares API versions ("1.41" < "1.9" is false); a version that is
// not major.minor is never less nor greater.
func less(a, b string) bool {
	amaj, amin, aok := parseVersion(a)
	bmaj, bmin, bok := parseVersion(b)
	if !aok || !bok {
		return false
	}
	return amaj < bmaj || amaj == bmaj && amin < bmin
}

func parseVersion(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil
}

// engineError turns an answer the engine gave in error into an operator's
// message; a 404 says how to fix it.
func (b *Backend) engineError(status int, body []byte) error {
	name := b.opts.Container
	msg := message(status, body)
	// The engine also answers 404 for a path it does not route ("page not
	// found"), as for an API version it does not know.
	if status == http.StatusNotFound && strings.HasPrefix(strings.ToLower(msg), "no such container") {
		return fmt.Errorf("%w %q: create it first (docker create --name %s ...)", ErrNoSuchContainer, name, name)
	}
	return fmt.Errorf("container %s: %s", name, msg)
}

// message is the engine's message in an error answer: {"message": "..."},
// or for the few errors it writes as plain text, their first line.
func message(status int, body []byte) string {
	var e struct{ Message string }
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if line = strings.TrimSpace(line); line != "" {
		return truncate(line, outputBytes)
	}
	return fmt.Sprintf("docker engine answered %d %s", status, http.StatusText(status))
}

func ok(status int) bool { return status >= 200 && status < 300 }

// socketPath accepts a path or a unix:// URL.
func socketPath(s string) (string, error) {
	switch {
	case s == "":
		return DefaultSocket, nil
	case strings.HasPrefix(s, "unix://"):
		if p := strings.TrimPrefix(s, "unix://"); p != "" {
			return p, nil
		}
	case !strings.Contains(s, "://"):
		return s, nil
	}
	return "", fmt.Errorf("docker socket %q: want a unix socket path or unix:// URL", s)
}

// lastLines returns the last non-empty lines of a probe's output, joined
// with "; " and bounded, as command and exec quote a log.
func lastLines(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > outputLines {
		lines = lines[len(lines)-outputLines:]
	}
	return truncate(strings.Join(lines, "; "), outputBytes)
}

// truncate cuts s to at most n bytes, keeping the start (where a message
// says what went wrong) and not splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}
