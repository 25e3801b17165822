package main

// `edgebench failover`: the unplanned failover, "within 1 s of the Main's
// death the Edge answers 503 with its maintenance page (no hung or reset
// connections), and within 1 s of the Standby's Start services the traffic
// flows to it", measured side by side with HAProxy using its default
// checks on the same scenario. See bench/README.md, section 9.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
)

const (
	ipFoMain    = "127.0.0.65" // xivo-main's agent and its service
	ipFoStandby = "127.0.0.66" // xivo-standby's agent and its service

	foWorkers       = 4
	foEvery         = 5 * time.Millisecond
	foClientTimeout = 2 * time.Second
	foHung          = time.Second // a request slower than this hung
	foTarget        = time.Second
	foMaxRequests   = 20000 // per worker; 5 ms apart that is 100 s, more than the run
	foSteadyFor     = time.Second
	foMaintMarker   = "please refresh it" // in the Edge's built-in maintenance page

	// HAProxy's defaults for `check` (not written in its config).
	haInter = "2s"
	haRise  = 2
	haFall  = 3
)

func failoverMain(args []string) {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	bin := fs.String("bin", "", "resilience binary (built from ./cmd/resilience when empty)")
	steady := fs.Duration("steady", 2*time.Second, "load before the Main is killed")
	wait := fs.Duration("wait", 3*time.Second, "from the kill to Start services on the Standby")
	until := fs.Duration("until", 15*time.Second, "at most this long after the Start for both proxies to serve the standby")
	pidfile := fs.String("pidfile", "", "append the pid of every process started here to this file")
	keep := fs.Bool("keep", false, "keep the temporary folder (logs, configs)")
	_ = fs.Parse(args)
	if *steady <= 0 || *steady > time.Minute || *wait <= 0 || *wait > time.Minute || *until <= 0 || *until > time.Minute {
		fmt.Fprintln(os.Stderr, "edgebench failover: -steady, -wait and -until must be in (0, 1m]")
		os.Exit(1)
	}
	b := &bench{bin: *bin, pidfile: *pidfile, keep: *keep, edgeLog: "info"}
	err := b.runFailover(*steady, *wait, *until)
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgebench failover:", err)
		os.Exit(1)
	}
}

// foAgent is one real xivo agent of the pair and its one service.
type foAgent struct {
	name, role, ip string
	api, svc       string // host:port
	cfg            string
	pid, svcPid    int
	cmd            *exec.Cmd
}

func (a *foAgent) url() string { return "http://" + a.api }

// writeAgent writes a xivo agent's config: one exec sample service with
// an http ready check, the peer, and three tokens (the harness's operate
// token, the peer's and the Edge's read tokens).
func (b *bench) writeAgent(a, peer *foAgent, operate, peerTok string) error {
	dir := filepath.Join(b.dir, a.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	peerFile := filepath.Join(b.dir, "peer.token")
	if err := os.WriteFile(peerFile, []byte(peerTok+"\n"), 0o600); err != nil {
		return err
	}
	text := "asterisk on " + a.name
	cfg := fmt.Sprintf(`kind: xivo
name: %s
role: %s
state_dir: %s
listen: {address: "%s"}
peer: {name: %s, url: "%s", token: {file: %s}, timeout: 1s}
auth:
  tokens:
    - {name: edgebench, scope: operate, hash: %q}
    - {name: %s, scope: read, hash: %q}
    - {name: edge, scope: read, hash: %q}
services:
  - name: asterisk
    exec:
      command: [%q, sample-service, --listen, %q, --text, %q]
      stop_grace: 2s
    ready: {http: "http://%s/"}
    start_timeout: 10s
log: {level: info}
`, a.name, a.role, filepath.Join(dir, "state"), a.api, peer.name, peer.url(), peerFile,
		auth.HashToken(operate), peer.name, auth.HashToken(peerTok), auth.HashToken(edgeToken),
		b.bin, a.svc, text, a.svc)
	a.cfg = filepath.Join(b.dir, a.name+".yaml")
	return os.WriteFile(a.cfg, []byte(cfg), 0o600)
}

// outcome is what one request through a proxy got.
type outcome int

const (
	outMain    outcome = iota // 200 from xivo-main's service
	outStandby                // 200 from xivo-standby's service
	outMaint                  // 503: the Edge's maintenance page; any 503 from HAProxy
	outStatus                 // any other answer
	outReset                  // connection reset or closed before the answer
	outConnErr                // could not connect, or another transport error
	outTimeout                // no answer within the client timeout
)

var outNames = [...]string{"main", "standby", "503", "other", "reset", "connerr", "timeout"}

func (o outcome) String() string { return outNames[o] }

type sample struct {
	sent time.Time
	lat  time.Duration
	out  outcome
	code int
	note string // the status line or the error of an unexpected outcome
}

func (s sample) end() time.Time { return s.sent.Add(s.lat) }

// bad: hung (slower than foHung) or no answer at all.
func (s sample) bad() bool {
	return s.lat > foHung || s.out == outReset || s.out == outConnErr || s.out == outTimeout
}

// foLoad is the client loop of one proxy: foWorkers keep-alive clients,
// each sending a GET every foEvery (after its previous answer), bounded in
// count and by deadline.
type foLoad struct {
	name    string
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func startFoLoad(name, url string, isMaint func(*http.Response, []byte) bool, deadline time.Time) *foLoad {
	ld := &foLoad{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	for range foWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true,
				DialContext: (&net.Dialer{Timeout: foClientTimeout}).DialContext}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: foClientTimeout, Transport: tr}
			for i := 0; i < foMaxRequests && time.Now().Before(deadline); i++ {
				sent := time.Now()
				s := getOnce(c, url, isMaint)
				s.sent, s.lat = sent, time.Since(sent)
				ld.mu.Lock()
				ld.samples = append(ld.samples, s)
				ld.mu.Unlock()
				t := time.NewTimer(max(0, time.Until(sent.Add(foEvery))))
				select {
				case <-ld.stop:
					t.Stop()
					return
				case <-t.C:
				}
			}
		}()
	}
	go func() { wg.Wait(); close(ld.done) }()
	return ld
}

func getOnce(c *http.Client, url string, isMaint func(*http.Response, []byte) bool) sample {
	resp, err := c.Get(url)
	if err != nil {
		return errSample(err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if err != nil {
		return errSample(err)
	}
	s := sample{code: resp.StatusCode}
	switch {
	case resp.StatusCode == 200 && string(data) == "asterisk on xivo-main\n":
		s.out = outMain
	case resp.StatusCode == 200 && string(data) == "asterisk on xivo-standby\n":
		s.out = outStandby
	case resp.StatusCode == 503 && isMaint(resp, data):
		s.out = outMaint
	default:
		s.out, s.note = outStatus, fmt.Sprintf("%s %q", resp.Status, truncate(strings.TrimSpace(string(data)), 60))
	}
	return s
}

func errSample(err error) sample {
	var ne net.Error
	s := sample{note: err.Error()}
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.out = outTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		s.out = outReset
	default:
		s.out = outConnErr
	}
	return s
}

func (ld *foLoad) snapshot() []sample {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	out := slices.Clone(ld.samples)
	slices.SortFunc(out, func(a, b sample) int { return a.end().Compare(b.end()) })
	return out
}

// finish stops the workers and waits for them (a request in flight ends
// within the client timeout).
func (ld *foLoad) finish() ([]sample, error) {
	close(ld.stop)
	select {
	case <-ld.done:
	case <-time.After(foClientTimeout + 3*time.Second):
		return nil, fmt.Errorf("%s load did not stop", ld.name)
	}
	return ld.snapshot(), nil
}

// steadyStandby: the answer (end time) from which every answer ended
// after from is the standby's; ok false when the last one is not.
func steadyStandby(ss []sample, from time.Time) (at time.Time, ok bool) {
	for i := len(ss) - 1; i >= 0 && !ss[i].end().Before(from); i-- {
		if ss[i].out != outStandby {
			break
		}
		at, ok = ss[i].end(), true
	}
	return at, ok
}

// foResult is one proxy's figures, relative to t_kill and t_start.
type foResult struct {
	name                     string
	first503, all503         time.Duration // -1: never
	lastBad                  time.Duration // end of the last bad request after the kill, -1: none
	errsKill, errsStart      int           // bad requests from the kill to the Start, and after it
	firstStandby, allStandby time.Duration // -1: never
	maxLatKill               time.Duration
	phase                    [3]map[string]int // before the kill, kill..start, after the start
	notes                    map[string]int
}

func analyze(name string, ss []sample, tKill, tStart time.Time) foResult {
	r := foResult{name: name, first503: -1, all503: -1, lastBad: -1, firstStandby: -1, allStandby: -1, notes: map[string]int{}}
	for i := range r.phase {
		r.phase[i] = map[string]int{}
	}
	for _, s := range ss { // sorted by end time
		e := s.end()
		ph := 0
		switch {
		case !s.sent.Before(tStart):
			ph = 2
		case !e.Before(tKill):
			ph = 1
		}
		key := s.out.String()
		if s.lat > foHung && s.out != outTimeout {
			key += " (hung)"
		}
		r.phase[ph][key]++
		if s.note != "" && ph > 0 {
			r.notes[fmt.Sprintf("%s: %s", s.out, s.note)]++
		}
		if e.Before(tKill) {
			continue
		}
		if s.out == outMaint && r.first503 < 0 {
			r.first503 = e.Sub(tKill)
		}
		if s.bad() {
			r.lastBad = e.Sub(tKill)
			if ph == 1 {
				r.errsKill++
			} else if ph == 2 {
				r.errsStart++
			}
		}
		if ph == 1 {
			r.maxLatKill = max(r.maxLatKill, s.lat)
		}
		if s.out == outStandby && !e.Before(tStart) && r.firstStandby < 0 {
			r.firstStandby = e.Sub(tStart)
		}
	}
	// all503: from the first 503 after which every answer ending before
	// the Start is a 503 (the Start ends the window).
	for i := len(ss) - 1; i >= 0; i-- {
		e := ss[i].end()
		if !e.Before(tStart) {
			continue
		}
		if e.Before(tKill) || ss[i].out != outMaint {
			break
		}
		r.all503 = e.Sub(tKill)
	}
	if at, ok := steadyStandby(ss, tStart); ok {
		r.allStandby = at.Sub(tStart)
	}
	return r
}

func msOrNever(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return strconv.FormatFloat(msf(d), 'f', 0, 64) + " ms"
}

// haState polls HAProxy's stats socket for the servers' check states.
func haState(sock string) (map[string]string, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	rd := csv.NewReader(bufio.NewReader(io.LimitReader(c, 1<<20)))
	rd.FieldsPerRecord = -1
	recs, err := rd.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || len(recs[0]) == 0 {
		return nil, errors.New("empty show stat")
	}
	head := recs[0]
	head[0] = strings.TrimPrefix(head[0], "# ")
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	st, ok := col["status"]
	if !ok {
		return nil, errors.New("no status column in show stat")
	}
	out := map[string]string{}
	for _, rec := range recs[1:] {
		if len(rec) > st && rec[0] == "be" && (rec[1] == "main" || rec[1] == "standby") {
			out[rec[1]] = rec[st]
		}
	}
	return out, nil
}

type haChange struct {
	at            time.Time
	server, state string
}

// childrenOf lists the pids whose parent is pid (from /proc).
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so from the last ')'.
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// serviceOf waits until the agent's sample service runs and returns its
// pid (its own process group: the agent starts it with Setpgid).
func serviceOf(a *foAgent, within time.Duration) (int, error) {
	end := time.Now().Add(within)
	for i := 0; i < 200 && time.Now().Before(end); i++ {
		for _, p := range childrenOf(a.pid) {
			cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if strings.Contains(string(cl), "sample-service") {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no sample-service child of pid %d", a.name, a.pid)
}

// getText GETs url and returns the status code and body.
func getText(ctx context.Context, url string) (int, string, error) {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(data), nil
}

// waitUntil polls cond every 50 ms until it holds, within d.
func waitUntil(ctx context.Context, d time.Duration, what string, cond func() (bool, string)) error {
	end := time.Now().Add(d)
	last := ""
	for i := 0; i < 2000 && time.Now().Before(end); i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ok, why := cond()
		if ok {
			return nil
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: not within %s (last: %s)", what, d, last)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (b *bench) runFailover(steady, wait, until time.Duration) error {
	ctx, cancel := signalContext("edgebench failover", 3*time.Minute+steady+wait+until)
	defer cancel()
	for _, tool := range []string{"taskset", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s required", tool)
		}
	}
	if _, err := b.setup(ctx, "edgebench-failover."); err != nil {
		return err
	}

	// 1. The pair: two real xivo agents, each with one sample service.
	mainA := &foAgent{name: "xivo-main", role: "main", ip: ipFoMain}
	standbyA := &foAgent{name: "xivo-standby", role: "standby", ip: ipFoStandby}
	for _, a := range []*foAgent{mainA, standbyA} {
		for _, dst := range []*string{&a.api, &a.svc} {
			p, err := freePort(a.ip)
			if err != nil {
				return err
			}
			*dst = net.JoinHostPort(a.ip, strconv.Itoa(p))
		}
	}
	operate, peerTok := auth.NewToken(), auth.NewToken()
	if err := b.writeAgent(mainA, standbyA, operate, peerTok); err != nil {
		return err
	}
	if err := b.writeAgent(standbyA, mainA, operate, peerTok); err != nil {
		return err
	}
	// The Standby first, so that the Main's first start finds its peer
	// up and Inactive (as the lab does).
	for _, a := range []*foAgent{standbyA, mainA} {
		if out, err := exec.CommandContext(ctx, b.bin, "check-config", "--config", a.cfg).CombinedOutput(); err != nil {
			return fmt.Errorf("check-config %s: %v\n%s", a.name, err, out)
		}
		if err := b.start(a.name, nil, b.bin, "serve", "--config", a.cfg); err != nil {
			return err
		}
		b.mu.Lock()
		a.cmd = b.procs[len(b.procs)-1]
		b.mu.Unlock()
		a.pid = a.cmd.Process.Pid
		want, wantBody := 503, "inactive "
		if a.role == "main" {
			want, wantBody = 200, "active "
		}
		err := waitUntil(ctx, 20*time.Second, a.name+" "+strings.TrimSpace(wantBody), func() (bool, string) {
			code, text, err := getText(ctx, a.url()+"/api/v1/active")
			if err != nil {
				return false, err.Error()
			}
			return code == want && strings.HasPrefix(text, wantBody), fmt.Sprintf("%d %q", code, text)
		})
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, b.tail(a.name))
		}
	}
	code, text, err := getText(ctx, "http://"+mainA.svc+"/")
	if err != nil || code != 200 || text != "asterisk on xivo-main\n" {
		return fmt.Errorf("xivo-main's service %s: %d %q %v", mainA.svc, code, text, err)
	}
	if mainA.svcPid, err = serviceOf(mainA, 5*time.Second); err != nil {
		return err
	}
	b.notePid(mainA.svcPid)
	fmt.Fprintf(os.Stderr, "edgebench failover: xivo-main agent %s (pid %d, service %s pid %d), xivo-standby agent %s (pid %d, service %s)\n",
		mainA.api, mainA.pid, mainA.svc, mainA.svcPid, standbyA.api, standbyA.pid, standbyA.svc)

	// 2. The Edge, defaults (no health check, info logs for the details).
	edgeURL, err := b.startEdgeServing(ctx, "web", mainA.url(), standbyA.url(), mainA.svc, standbyA.svc)
	if err != nil {
		return err
	}

	// 3. HAProxy: the standard active/backup pair with its default checks
	// on the agents' /api/v1/active.
	haPort, err := freePort(ipHAProxy)
	if err != nil {
		return err
	}
	sock := filepath.Join(b.dir, "haproxy.sock")
	_, mainAPIPort, _ := net.SplitHostPort(mainA.api)
	_, standbyAPIPort, _ := net.SplitHostPort(standbyA.api)
	ha := fmt.Sprintf(`global
    nbthread 1
    maxconn 4096
    stats socket %s mode 600 level user
    log stderr format short local0 notice

defaults
    mode http
    log global
    option http-keep-alive
    # What an operator normally has: 3 retries of a failed connect (the
    # default), the last one to another server if one is up.
    retries 3
    option redispatch
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend fe
    bind %s:%d
    default_backend be

# Checks with HAProxy's defaults: inter 2s, rise 2, fall 3 (not written).
backend be
    option httpchk GET /api/v1/active
    http-check expect status 200
    server main %s check port %s
    server standby %s check port %s backup
`, sock, ipHAProxy, haPort, mainA.svc, mainAPIPort, standbyA.svc, standbyAPIPort)
	if _, err := b.startHAProxy(ha); err != nil {
		return err
	}
	haURL := fmt.Sprintf("http://%s:%d/", ipHAProxy, haPort)
	if err := waitBody(ctx, haURL, 10*time.Second); err != nil {
		return fmt.Errorf("haproxy: %w (log: %s)", err, b.tail("haproxy"))
	}
	// HAProxy starts every server UP; wait until its checks have taken
	// the (Inactive) standby DOWN, as in a pair that has run a while.
	err = waitUntil(ctx, 30*time.Second, "haproxy: main UP, standby DOWN", func() (bool, string) {
		st, err := haState(sock)
		if err != nil {
			return false, err.Error()
		}
		return st["main"] == "UP" && st["standby"] == "DOWN", fmt.Sprint(st)
	})
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, b.tail("haproxy"))
	}

	// 4. Load through both proxies at once, and HAProxy's states.
	loadEnd := time.Now().Add(steady + wait + until + 10*time.Second)
	edgeLoad := startFoLoad("edge", edgeURL, func(r *http.Response, body []byte) bool {
		return r.Header.Get("Retry-After") != "" && strings.Contains(string(body), foMaintMarker)
	}, loadEnd)
	haLoad := startFoLoad("haproxy", haURL, func(*http.Response, []byte) bool { return true }, loadEnd)
	var (
		haMu      sync.Mutex
		haChanges []haChange
		haStop    = make(chan struct{})
		haDone    = make(chan struct{})
	)
	go func() {
		defer close(haDone)
		last := map[string]string{}
		for i := 0; i < 20000 && time.Now().Before(loadEnd); i++ {
			if st, err := haState(sock); err == nil {
				now := time.Now()
				haMu.Lock()
				for _, s := range []string{"main", "standby"} {
					if st[s] != last[s] {
						haChanges = append(haChanges, haChange{now, s, st[s]})
						last[s] = st[s]
					}
				}
				haMu.Unlock()
			}
			select {
			case <-haStop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	stopAll := func() (edgeS, haS []sample, err error) {
		close(haStop)
		<-haDone
		edgeS, err1 := edgeLoad.finish()
		haS, err2 := haLoad.finish()
		return edgeS, haS, errors.Join(err1, err2)
	}

	// 5. The scenario.
	if err := sleepCtx(ctx, steady); err != nil {
		_, _, _ = stopAll()
		return err
	}
	for _, ld := range []*foLoad{edgeLoad, haLoad} {
		for _, s := range ld.snapshot() {
			if s.out != outMain {
				_, _, _ = stopAll()
				return fmt.Errorf("%s before the kill: a request got %s %s", ld.name, s.out, s.note)
			}
		}
	}
	// The crash: SIGKILL to the agent's process group and to its
	// service's (the agent gives each service its own group).
	tKill := time.Now()
	errKill := errors.Join(syscall.Kill(-mainA.pid, syscall.SIGKILL), syscall.Kill(-mainA.svcPid, syscall.SIGKILL))
	if errKill != nil {
		_, _, _ = stopAll()
		return fmt.Errorf("kill xivo-main: %w", errKill)
	}
	_ = mainA.cmd.Wait()
	killedIn := time.Since(tKill)
	if err := waitUntil(ctx, 2*time.Second, "xivo-main's service gone", func() (bool, string) {
		c, err := net.DialTimeout("tcp", mainA.svc, 200*time.Millisecond)
		if err != nil {
			return true, ""
		}
		c.Close()
		return false, "still accepts"
	}); err != nil {
		_, _, _ = stopAll()
		return err
	}
	if err := sleepCtx(ctx, time.Until(tKill.Add(wait))); err != nil {
		_, _, _ = stopAll()
		return err
	}
	tStart := time.Now()
	startCode, startBody, startErr := postStart(ctx, standbyA.url(), operate)
	startTook := time.Since(tStart)
	if startErr != nil || startCode != 200 {
		_, _, _ = stopAll()
		return fmt.Errorf("start services on xivo-standby: %d %s %v (log: %s)", startCode, truncate(startBody, 300), startErr, b.tail("xivo-standby"))
	}
	var snap struct {
		Status   string `json:"status"`
		Epoch    uint64 `json:"epoch"`
		Warnings []struct {
			Code string `json:"code"`
		} `json:"warnings"`
	}
	_ = json.Unmarshal([]byte(startBody), &snap)
	// Until both serve the standby steadily for foSteadyFor, or until.
	stopBy := tStart.Add(until)
	for i := 0; i < 10000 && time.Now().Before(stopBy); i++ {
		now, ok := time.Now(), true
		for _, ld := range []*foLoad{edgeLoad, haLoad} {
			at, steady := steadyStandby(ld.snapshot(), tStart)
			ok = ok && steady && now.Sub(at) >= foSteadyFor
		}
		if ok || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	edgeS, haS, err := stopAll()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// 6. Figures; every request in DIR/samples-PROXY.csv (-keep keeps it).
	for name, ss := range map[string][]sample{"edge": edgeS, "haproxy": haS} {
		if err := writeSamples(filepath.Join(b.dir, "samples-"+name+".csv"), ss, tKill, tStart); err != nil {
			return err
		}
	}
	er := analyze("edge", edgeS, tKill, tStart)
	hr := analyze("haproxy", haS, tKill, tStart)
	fmt.Fprintf(os.Stderr, "edgebench failover: t_kill: xivo-main's agent and service SIGKILLed (reaped in %.1f ms); t_start = t_kill + %s: POST /api/v1/services/start on xivo-standby answered 200 in %.0f ms: %s epoch %d, warnings %v\n",
		msf(killedIn), tStart.Sub(tKill).Round(time.Millisecond), msf(startTook), snap.Status, snap.Epoch, snap.Warnings)
	fmt.Fprintf(os.Stderr, "edgebench failover: load: %d workers per proxy, a GET every %s each, client timeout %s, keep-alive; hung = slower than %s\n",
		foWorkers, foEvery, foClientTimeout, foHung)
	for _, r := range []foResult{er, hr} {
		fmt.Fprintf(os.Stderr, "edgebench failover: %-7s before the kill %v | kill..start %v | after the start %v\n", r.name, r.phase[0], r.phase[1], r.phase[2])
		fmt.Fprintf(os.Stderr, "edgebench failover: %-7s first 503 t_kill+%s, all 503 from t_kill+%s until the start, last hung/failed request ended t_kill+%s, max latency kill..start %.0f ms; first standby t_start+%s, all standby from t_start+%s\n",
			r.name, msOrNever(r.first503), msOrNever(r.all503), msOrNever(r.lastBad), msf(r.maxLatKill), msOrNever(r.firstStandby), msOrNever(r.allStandby))
		notes := slices.Sorted(func(yield func(string) bool) {
			for k := range r.notes {
				if !yield(k) {
					return
				}
			}
		})
		for i, k := range notes {
			if i == 8 {
				fmt.Fprintf(os.Stderr, "edgebench failover: %-7s   ... %d more kinds\n", r.name, len(notes)-i)
				break
			}
			fmt.Fprintf(os.Stderr, "edgebench failover: %-7s   %d x %s\n", r.name, r.notes[k], truncate(k, 160))
		}
	}
	haMu.Lock()
	for _, c := range haChanges {
		fmt.Fprintf(os.Stderr, "edgebench failover: haproxy check state: %-7s %-10s at %s\n", c.server, c.state, rel(c.at, tKill, tStart))
	}
	haMu.Unlock()
	for _, l := range edgeLogLines(filepath.Join(b.dir, "edge.log")) {
		fmt.Fprintf(os.Stderr, "edgebench failover: edge log at %s: %s\n", rel(l.at, tKill, tStart), truncate(l.text, 240))
	}

	// 7. The line. PASS on the Edge: every answer from t_kill + 1 s until
	// the Start is the maintenance page, no hung, reset or failed request
	// at all after the kill, and every answer from t_start + 1 s is the
	// standby's.
	verdict := "PASS"
	if er.all503 < 0 || er.all503 > foTarget || er.errsKill > 0 || er.errsStart > 0 || er.allStandby < 0 || er.allStandby > foTarget {
		verdict = "FAIL"
	}
	part := func(r foResult) string {
		return fmt.Sprintf("503 after %s (all from %s), standby after %s (all from %s), errors %d (+%d after start)",
			msOrNever(r.first503), msOrNever(r.all503), msOrNever(r.firstStandby), msOrNever(r.allStandby), r.errsKill, r.errsStart)
	}
	fmt.Printf("edge_failover: edge %s | haproxy (inter %s fall %d rise %d) %s | targets: 503 within 1 s, standby within 1 s %s\n",
		part(er), haInter, haFall, haRise, part(hr), verdict)
	return nil
}

// rel names t relative to the kill, or to the start once past it.
func rel(t, tKill, tStart time.Time) string {
	if t.Before(tStart) {
		return fmt.Sprintf("t_kill%+.0f ms", msf(t.Sub(tKill)))
	}
	return fmt.Sprintf("t_start%+.0f ms", msf(t.Sub(tStart)))
}

type logLine struct {
	at   time.Time
	text string
}

// edgeLogLines picks the Edge's lines about nodes, backends and switches
// (slog's text format: time=RFC3339 with milliseconds first).
func edgeLogLines(file string) []logLine {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var out []logLine
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, "switched") && !strings.Contains(l, "node ") && !strings.Contains(l, "backend") {
			continue
		}
		ts, rest, ok := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		out = append(out, logLine{at, rest})
		if len(out) == 40 {
			break
		}
	}
	return out
}

// postStart asks a node to Start services (no force: its peer is dead,
// so the split-brain check finds it unreachable, which allows the Start).
func postStart(ctx context.Context, base, token string) (int, string, error) {
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(c, http.MethodPost, base+"/api/v1/services/start",
		strings.NewReader(`{"reason":"edgebench failover: xivo-main died"}`))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(data), nil
}

// writeSamples writes one line per request: send and end times relative
// to t_kill and to t_start (ms), latency, outcome, status, note.
func writeSamples(file string, ss []sample, tKill, tStart time.Time) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"sent_kill_ms", "end_kill_ms", "sent_start_ms", "end_start_ms", "latency_ms", "outcome", "status", "note"})
	f1 := func(d time.Duration) string { return strconv.FormatFloat(msf(d), 'f', 1, 64) }
	for _, s := range ss {
		_ = w.Write([]string{f1(s.sent.Sub(tKill)), f1(s.end().Sub(tKill)), f1(s.sent.Sub(tStart)), f1(s.end().Sub(tStart)),
			f1(s.lat), s.out.String(), strconv.Itoa(s.code), s.note})
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}
