// Command edgebench measures requests/s and p99 latency through the Edge
// (`resilience serve` with kind edge) against HAProxy (Debian's package) in
// front of the same backend, under the same load, on the same machine, in
// the same run. Both proxies are pinned to core 0 with one thread (the Edge
// with GOMAXPROCS=1, HAProxy with nbthread 1); the backend and wrk share
// core 1. Runs alternate edge, haproxy, edge, haproxy, ...; the best run of
// each (by requests/s) is compared.
//
//	go run ./bench/edgebench [-bin resilience] [-duration 10s] [-runs 2] [-conns 32]
//
// The backend is this binary again: `edgebench backend --listen ADDR`.
//
// A second mode, `edgebench ws [-bin resilience] [-n 10000]`, holds N idle
// WebSockets through the Edge and through HAProxy, reads both proxies'
// resident memory, then switches the Edge's route (xivo-standby takes over
// at epoch 2) and times how long until the Edge closed every WebSocket
// (ws.go; its backend is `edgebench wsbackend --listen ADDR --listen ADDR`).
// It prints:
//
//	edge_websockets: N idle WS: edge VmRSS X MB (HWM Y MB) | haproxy VmRSS Z MB | xR.RR | closed on switch: max A ms p99 B ms, left open C (targets: < 200 MB, all within 1 s) PASS|FAIL
//
// A third mode, `edgebench failover [-bin resilience]`, is the unplanned
// failover with two real xivo agents (failover.go): load through the Edge
// and through HAProxy (default checks on the agents' /api/v1/active) at
// once, the Main's agent and service SIGKILLed, Start services on the
// Standby 3 s later. It prints:
//
//	edge_failover: edge 503 after X ms (all from X' ms), standby after Y ms (all from Y' ms), errors E (+F after start) | haproxy (inter 2s fall 3 rise 2) ... | targets: 503 within 1 s, standby within 1 s PASS|FAIL
//
// The default mode prints one line:
//
//	edge_vs_haproxy: edge X req/s p99 Yms | haproxy X req/s p99 Yms | req/s xA (target >= 0.8), p99 xB (target <= 1.5) PASS|FAIL
//
// Exit status 0 when it ran (whatever the targets say), 1 when it could not.
// Traffic stays on 127.0.0.61 to 127.0.0.64 (and .65, .66 for the
// failover mode's agents, .70 to .79 for the ws mode's clients); every
// loop is bounded in count and the whole run by a deadline.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	ipBackend = "127.0.0.61"
	ipStubs   = "127.0.0.62"
	ipEdge    = "127.0.0.63"
	ipHAProxy = "127.0.0.64"
	body      = "asterisk on xivo-main\n"

	minRatioRPS = 0.8
	maxRatioP99 = 1.5
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		fs := flag.NewFlagSet("backend", flag.ExitOnError)
		listen := fs.String("listen", "", "HOST:PORT to serve on")
		_ = fs.Parse(os.Args[2:])
		if err := backend(*listen); err != nil {
			fmt.Fprintln(os.Stderr, "edgebench backend:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "wsbackend" {
		fs := flag.NewFlagSet("wsbackend", flag.ExitOnError)
		var listen listFlag
		fs.Var(&listen, "listen", "HOST:PORT to serve WebSocket upgrades on (repeatable)")
		_ = fs.Parse(os.Args[2:])
		if err := wsBackend(listen); err != nil {
			fmt.Fprintln(os.Stderr, "edgebench wsbackend:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "ws" {
		wsMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "failover" {
		failoverMain(os.Args[2:])
		return
	}
	bin := flag.String("bin", "", "resilience binary (built from ./cmd/resilience when empty)")
	duration := flag.Duration("duration", 10*time.Second, "wrk duration of each run")
	runs := flag.Int("runs", 2, "runs of each proxy (alternated)")
	conns := flag.Int("conns", 32, "wrk connections")
	pidfile := flag.String("pidfile", "", "append the pid of every process started here to this file")
	keep := flag.Bool("keep", false, "keep the temporary folder (logs, configs)")
	flag.Parse()
	if *runs < 1 || *runs > 10 || *duration <= 0 || *duration > 2*time.Minute {
		fmt.Fprintln(os.Stderr, "edgebench: -runs must be 1..10 and -duration in (0, 2m]")
		os.Exit(1)
	}
	b := &bench{bin: *bin, duration: *duration, runs: *runs, conns: *conns, pidfile: *pidfile, keep: *keep}
	err := b.run()
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgebench:", err)
		os.Exit(1)
	}
}

// backend serves the constant body; it runs as its own process, pinned.
func backend(listen string) error {
	if listen == "" {
		return errors.New("--listen required")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	payload := []byte(body)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			_, _ = w.Write(payload)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; _ = srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type bench struct {
	bin      string
	duration time.Duration
	runs     int
	conns    int
	pidfile  string
	keep     bool
	// edgeLog is the Edge's log level (default warn).
	edgeLog string

	dir   string
	mu    sync.Mutex
	procs []*exec.Cmd
	stubs []*http.Server
}

type result struct {
	rps float64
	p99 time.Duration
}

func (b *bench) run() error {
	ctx, cancel := signalContext("edgebench", 2*time.Minute+time.Duration(2*b.runs)*(b.duration+5*time.Second))
	defer cancel()

	for _, tool := range []string{"taskset", "wrk", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := tool
			if tool == "taskset" {
				pkg = "util-linux"
			}
			return fmt.Errorf("%s required (apt-get install -y %s)", tool, pkg)
		}
	}
	self, err := b.setup(ctx, "edgebench.")
	if err != nil {
		return err
	}

	// 1. Backend, its own process on core 1.
	backendPort, err := freePort(ipBackend)
	if err != nil {
		return err
	}
	closedPort, err := freePort(ipBackend)
	if err != nil {
		return err
	}
	backendAddr := net.JoinHostPort(ipBackend, strconv.Itoa(backendPort))
	if err := b.start("backend", nil, "taskset", "-c", "1", self, "backend", "--listen", backendAddr); err != nil {
		return err
	}
	if err := waitBody(ctx, "http://"+backendAddr+"/", 10*time.Second); err != nil {
		return fmt.Errorf("backend: %w", err)
	}

	// 2. Stub node agents.
	mainURL, err := b.stub(mainStatus)
	if err != nil {
		return err
	}
	standbyURL, err := b.stub(standbyStatus)
	if err != nil {
		return err
	}

	// 3. The Edge, a real agent process on core 0, one P.
	edgeURL, err := b.startEdgeServing(ctx, "web", mainURL, standbyURL, backendAddr, net.JoinHostPort(ipBackend, strconv.Itoa(closedPort)))
	if err != nil {
		return err
	}

	// 4. HAProxy on core 0, one thread.
	haPort, err := freePort(ipHAProxy)
	if err != nil {
		return err
	}
	ha := fmt.Sprintf(`global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind %s:%d
    default_backend be

backend be
    server main %s check
`, ipHAProxy, haPort, backendAddr)
	if _, err := b.startHAProxy(ha); err != nil {
		return err
	}
	haURL := fmt.Sprintf("http://%s:%d/", ipHAProxy, haPort)
	if err := waitBody(ctx, haURL, 10*time.Second); err != nil {
		return fmt.Errorf("haproxy: %w (log: %s)", err, b.tail("haproxy"))
	}

	// 5. Load, alternated, after a short warm-up of each.
	for _, u := range []string{edgeURL, haURL} {
		if _, err := b.wrk(ctx, u, time.Second); err != nil {
			return fmt.Errorf("warm-up %s: %w", u, err)
		}
	}
	// The ceiling of wrk and the backend on core 1 alone: a proxy whose
	// figures come near it is not what limits them.
	direct, err := b.wrk(ctx, "http://"+backendAddr+"/", b.duration)
	if err != nil {
		return fmt.Errorf("backend direct: %w", err)
	}
	fmt.Fprintf(os.Stderr, "edgebench: backend direct %9.0f req/s p99 %s (ceiling of wrk + backend on core 1)\n", direct.rps, direct.p99)
	var best [2]result
	names := [2]string{"edge", "haproxy"}
	urls := [2]string{edgeURL, haURL}
	for i := range b.runs {
		for k := range 2 {
			r, err := b.wrk(ctx, urls[k], b.duration)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", names[k], i+1, err)
			}
			fmt.Fprintf(os.Stderr, "edgebench: run %d %-7s %9.0f req/s p99 %s\n", i+1, names[k], r.rps, r.p99)
			if r.rps > 0.9*direct.rps {
				fmt.Fprintf(os.Stderr, "edgebench: %s run %d is within 10%% of the backend's direct ceiling: core 1 limits it, not the proxy\n", names[k], i+1)
			}
			if r.rps > best[k].rps {
				best[k] = r
			}
		}
	}
	// The Edge must still answer the backend's body after the load.
	if err := waitBody(ctx, edgeURL, 5*time.Second); err != nil {
		return fmt.Errorf("edge after load: %w", err)
	}

	// 6. The line.
	e, h := best[0], best[1]
	rr := e.rps / h.rps
	pr := float64(e.p99) / float64(h.p99)
	verdict := "PASS"
	if rr < minRatioRPS || pr > maxRatioP99 {
		verdict = "FAIL"
	}
	fmt.Printf("edge_vs_haproxy: edge %.0f req/s p99 %s | haproxy %.0f req/s p99 %s | req/s x%.2f (target >= %.1f), p99 x%.2f (target <= %.1f) %s\n",
		e.rps, ms(e.p99), h.rps, ms(h.p99), rr, minRatioRPS, pr, maxRatioP99, verdict)
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// The stub nodes' first statuses: the Main Active, the Standby Inactive.
const (
	mainStatus    = `{"name":"xivo-main","kind":"xivo","role":"main","mode":"manual","revision":1,"status":"active","desired":"active","epoch":1,"since":"2026-01-01T00:00:00Z","services":[],"warnings":[]}`
	standbyStatus = `{"name":"xivo-standby","kind":"xivo","role":"standby","mode":"manual","revision":1,"status":"inactive","desired":"inactive","epoch":0,"since":"2026-01-01T00:00:00Z","services":[],"warnings":[]}`
)

// startEdgeServing starts the Edge with one HTTP route and waits until
// it relays a body; it returns the route's URL.
func (b *bench) startEdgeServing(ctx context.Context, route, mainURL, standbyURL, mainAddr, standbyAddr string) (string, error) {
	addr, err := b.startEdge(ctx, route, mainURL, standbyURL, mainAddr, standbyAddr)
	if err != nil {
		return "", err
	}
	url := "http://" + addr + "/"
	if err := waitBody(ctx, url, 20*time.Second); err != nil {
		return "", fmt.Errorf("edge: %w (log: %s)", err, b.tail("edge"))
	}
	return url, nil
}

// startEdge writes an edge config with one route from the two stub nodes
// to the two backends, checks it, and starts the agent on core 0 with one
// P; it returns the Edge's HTTP address.
func (b *bench) startEdge(ctx context.Context, route, mainURL, standbyURL, mainAddr, standbyAddr string) (string, error) {
	apiPort, err := freePort(ipEdge)
	if err != nil {
		return "", err
	}
	httpPort, err := freePort(ipEdge)
	if err != nil {
		return "", err
	}
	token := filepath.Join(b.dir, "token")
	if err := os.WriteFile(token, []byte(edgeToken+"\n"), 0o600); err != nil {
		return "", err
	}
	cfg := filepath.Join(b.dir, "edge.yaml")
	yaml := fmt.Sprintf(`kind: edge
name: edge
state_dir: %s
listen: {address: "%s:%d"}
edge: {http: "%s:%d"}
nodes:
  - {name: xivo-main, url: "%s", token: {file: %s}}
  - {name: xivo-standby, url: "%s", token: {file: %s}}
routes:
  - name: %s
    main: {node: xivo-main, address: "%s"}
    standby: {node: xivo-standby, address: "%s"}
log: {level: %s}
`, filepath.Join(b.dir, "state"), ipEdge, apiPort, ipEdge, httpPort, mainURL, token, standbyURL, token, route, mainAddr, standbyAddr, cmp.Or(b.edgeLog, "warn"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, b.bin, "check-config", "--config", cfg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("check-config: %v\n%s", err, out)
	}
	if err := b.start("edge", []string{"GOMAXPROCS=1"}, "taskset", "-c", "0", b.bin, "serve", "--config", cfg); err != nil {
		return "", err
	}
	return net.JoinHostPort(ipEdge, strconv.Itoa(httpPort)), nil
}

// edgeToken is the read token the Edge shows its nodes (the stubs ignore
// it; the real agents of the failover mode accept its hash).
const edgeToken = "edgebench-token-0123456789abcdef"

// signalContext is the run's context: it ends at the deadline d from now
// or on SIGINT or SIGTERM (said on stderr under name).
func signalContext(name string, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sig)
		select {
		case s := <-sig:
			fmt.Fprintln(os.Stderr, name+": got", s)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// setup makes the temporary folder (prefix names it), builds the
// resilience binary into it unless -bin was given, and returns this
// harness's own executable (the backends are this binary again).
func (b *bench) setup(ctx context.Context, prefix string) (self string, err error) {
	if b.dir, err = os.MkdirTemp("", prefix); err != nil {
		return "", err
	}
	if b.bin == "" {
		b.bin = filepath.Join(b.dir, "resilience")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/resilience").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build ./cmd/resilience (run from the module root): %v\n%s", err, out)
		}
	}
	return os.Executable()
}

// startHAProxy writes cfg to DIR/haproxy.cfg and starts HAProxy in the
// foreground (-db) pinned to core 0; it returns its pid.
func (b *bench) startHAProxy(cfg string) (int, error) {
	file := filepath.Join(b.dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return 0, err
	}
	if err := b.start("haproxy", nil, "taskset", "-c", "0", "haproxy", "-f", file, "-db"); err != nil {
		return 0, err
	}
	return b.lastPid(), nil
}

// start runs a child with its output in DIR/NAME.log, in its own process
// group; it gets SIGKILL if this process dies (Pdeathsig). taskset execs
// the command, so the pid is the command's.
func (b *bench) start(name string, env []string, argv ...string) error {
	logf, err := os.Create(filepath.Join(b.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	logf.Close()
	b.mu.Lock()
	b.procs = append(b.procs, cmd)
	b.mu.Unlock()
	b.notePid(cmd.Process.Pid)
	return nil
}

// notePid appends pid to -pidfile (run.sh's last-resort cleanup).
func (b *bench) notePid(pid int) {
	if b.pidfile != "" {
		if f, err := os.OpenFile(b.pidfile, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(f, pid)
			f.Close()
		}
	}
}

func (b *bench) tail(name string) string {
	data, _ := os.ReadFile(filepath.Join(b.dir, name+".log"))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}

// cleanup stops the children (SIGTERM, then SIGKILL after 5s) and the
// stubs, and removes the temporary folder.
func (b *bench) cleanup() {
	b.mu.Lock()
	procs := b.procs
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			_ = p.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, p := range procs {
			_ = p.Process.Kill()
		}
		<-done
	}
	for _, s := range b.stubs {
		_ = s.Close()
	}
	if b.dir != "" {
		if b.keep {
			fmt.Fprintln(os.Stderr, "edgebench: kept", b.dir)
		} else {
			_ = os.RemoveAll(b.dir)
		}
	}
}

// stub serves a node agent's status and event stream with a fixed status;
// it ignores authentication.
func (b *bench) stub(status string) (string, error) {
	ln, err := net.Listen("tcp", ipStubs+":0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, status+"\n")
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl, _ := w.(http.Flusher)
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", status); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		// Bounded: at most an hour of heartbeats (the run is minutes).
		for range 1800 {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.stubs = append(b.stubs, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitBody polls url every 50ms until it answers 200 with the backend's body.
func waitBody(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	end := time.Now().Add(timeout)
	var last string
	for i := 0; i < 1000 && time.Now().Before(end); i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := client.Get(url)
		if err == nil {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == 200 && string(data) == body {
				return nil
			}
			last = fmt.Sprintf("%s %q", resp.Status, truncate(string(data), 120))
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 %q within %s (last: %s)", url, body, timeout, last)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var (
	reRPS  = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reP99  = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reErrs = regexp.MustCompile(`(?m)^\s+(Socket errors:.*|Non-2xx or 3xx responses:.*)$`)
)

// wrk runs wrk on core 1 and parses requests/s and p99.
func (b *bench) wrk(ctx context.Context, url string, d time.Duration) (result, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	c, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, "taskset", "-c", "1", "wrk", "-t1", "-c"+strconv.Itoa(b.conns),
		"-d"+strconv.Itoa(secs)+"s", "--latency", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (result, error) {
	m := reRPS.FindStringSubmatch(out)
	p := reP99.FindStringSubmatch(out)
	if m == nil || p == nil {
		return result{}, fmt.Errorf("cannot parse wrk output:\n%s", out)
	}
	if e := reErrs.FindAllString(out, -1); len(e) > 0 {
		// Errors make the figures meaningless (a 503 is fast).
		return result{}, fmt.Errorf("wrk reported errors:%s\n%s", strings.Join(e, ";"), out)
	}
	rps, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return result{}, err
	}
	v, err := strconv.ParseFloat(p[1], 64)
	if err != nil {
		return result{}, err
	}
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[p[2]]
	return result{rps: rps, p99: time.Duration(v * float64(unit))}, nil
}
