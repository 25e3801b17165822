package main

// `edgebench ws`: issue 6's WebSocket target, "10,000 idle WebSocket
// connections held with under 200 MB resident; all closed within 1 s of a
// switch". See bench/README.md, section 8.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	wsGUID        = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsMaxRSSMB    = 200.0
	wsMaxClose    = time.Second
	wsLeftOpenBy  = 5 * time.Second
	wsClientIPs   = 10 // 127.0.0.70 .. 127.0.0.79
	wsChildNofile = 65536
	wsFdMargin    = 256 // descriptors kept for listeners, streams, logs
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsBackend answers WebSocket upgrades on each address with 101 and the
// RFC 6455 accept, then holds the connection, reading until EOF. Anything
// else gets a 400. Its own process.
func wsBackend(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("--listen required")
	}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	var open atomic.Int64
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				go wsServe(c, &open)
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, ln := range lns {
		ln.Close()
	}
	return nil
}

func wsServe(c net.Conn, open *atomic.Int64) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 1024)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") || key == "" {
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+wsAccept(key)+"\r\n\r\n"); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	open.Add(1)
	defer open.Add(-1)
	// Hold: read (and drop) until EOF; bounded by the peer closing.
	buf := make([]byte, 512)
	for {
		if _, err := br.Read(buf); err != nil {
			return
		}
	}
}

// dynStub is a stub node agent whose status changes at runtime: set pushes
// the new status on every open event stream.
type dynStub struct {
	mu     sync.Mutex
	status string
	subs   map[chan string]struct{}
	pushed time.Time
}

func (b *bench) dynStub(status string) (*dynStub, string, error) {
	ln, err := net.Listen("tcp", ipStubs+":0")
	if err != nil {
		return nil, "", err
	}
	s := &dynStub{status: status, subs: map[chan string]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, st+"\n")
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		ch := make(chan string, 4)
		s.mu.Lock()
		st := s.status
		s.subs[ch] = struct{}{}
		s.mu.Unlock()
		defer func() { s.mu.Lock(); delete(s.subs, ch); s.mu.Unlock() }()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl, _ := w.(http.Flusher)
		send := func(msg string) bool {
			if _, err := io.WriteString(w, msg); err != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
			return true
		}
		if !send("event: status\ndata: " + st + "\n\n") {
			return
		}
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for range 1800 { // bounded: an hour of heartbeats
			select {
			case <-r.Context().Done():
				return
			case st := <-ch:
				if !send("event: status\ndata: " + st + "\n\n") {
					return
				}
			case <-t.C:
				if !send(": heartbeat\n\n") {
					return
				}
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.stubs = append(b.stubs, srv)
	go func() { _ = srv.Serve(ln) }()
	return s, "http://" + ln.Addr().String(), nil
}

// set changes the status and pushes it; it returns the time of the push
// and how many streams it went to.
func (s *dynStub) set(status string) (time.Time, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
	s.pushed = time.Now()
	n := 0
	for ch := range s.subs {
		select {
		case ch <- status:
			n++
		default:
		}
	}
	return s.pushed, n
}

// wsClient is one client WebSocket; closed is set when its read ends.
type wsClient struct {
	closedAt atomic.Int64 // UnixNano, 0 while open
}

// wsDial opens one WebSocket by hand through addr from source IP src and
// checks the 101 and its accept; a goroutine then reads until EOF and
// records the time.
func wsDial(ctx context.Context, addr, src string, wg *sync.WaitGroup) (*wsClient, net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, nil, fmt.Errorf("upgrade answered %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		c.Close()
		return nil, nil, fmt.Errorf("bad Sec-WebSocket-Accept %q", got)
	}
	_ = c.SetDeadline(time.Time{})
	cl := &wsClient{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var buf [64]byte
		for {
			if _, err := br.Read(buf[:]); err != nil {
				cl.closedAt.Store(time.Now().UnixNano())
				return
			}
		}
	}()
	return cl, c, nil
}

// wsOpen opens n WebSockets through addr, par at a time, spread over the
// client source IPs, within timeout.
func wsOpen(ctx context.Context, addr string, n, par int, timeout time.Duration, wg *sync.WaitGroup) ([]*wsClient, []net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	clients := make([]*wsClient, n)
	conns := make([]net.Conn, n)
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		fails    atomic.Int64
		workers  sync.WaitGroup
	)
	for range par {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				src := "127.0.0." + strconv.Itoa(70+i%wsClientIPs)
				cl, c, err := wsDial(ctx, addr, src, wg)
				if err != nil {
					fails.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				clients[i], conns[i] = cl, c
			}
		}()
	}
	workers.Wait()
	if f := fails.Load(); f > 0 || ctx.Err() != nil {
		if firstErr == nil {
			firstErr = ctx.Err()
		}
		return clients, conns, fmt.Errorf("%d of %d WebSockets through %s failed (first: %v)", f, n, addr, firstErr)
	}
	return clients, conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// memMB reads VmRSS and VmHWM of pid, in MB.
func memMB(pid int) (rss, hwm float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

func (b *bench) lastPid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.procs[len(b.procs)-1].Process.Pid
}

func wsMain(args []string) {
	fs := flag.NewFlagSet("ws", flag.ExitOnError)
	bin := fs.String("bin", "", "resilience binary (built from ./cmd/resilience when empty)")
	n := fs.Int("n", 10000, "idle WebSockets to hold")
	par := fs.Int("par", 200, "parallel dials")
	idle := fs.Duration("idle", 3*time.Second, "idle time before reading memory")
	pidfile := fs.String("pidfile", "", "append the pid of every process started here to this file")
	keep := fs.Bool("keep", false, "keep the temporary folder (logs, configs)")
	_ = fs.Parse(args)
	if *n < 1 || *n > 20000 || *par < 1 || *par > 1000 || *idle < 0 || *idle > time.Minute {
		fmt.Fprintln(os.Stderr, "edgebench ws: -n must be 1..20000, -par 1..1000, -idle [0, 1m]")
		os.Exit(1)
	}
	b := &bench{bin: *bin, pidfile: *pidfile, keep: *keep}
	err := b.runWS(*n, *par, *idle)
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgebench ws:", err)
		os.Exit(1)
	}
}

func (b *bench) runWS(n, par int, idle time.Duration) error {
	ctx, cancel := signalContext("edgebench ws", 4*time.Minute)
	defer cancel()
	for _, tool := range []string{"taskset", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s required", tool)
		}
	}
	// Each WebSocket costs the Edge two descriptors; children inherit this.
	// Without CAP_SYS_RESOURCE the hard limit cannot be raised: then the
	// soft limit goes up to the hard one and N is capped to what the
	// Edge's descriptors allow (reported on stderr and in the line's N).
	lim := syscall.Rlimit{Cur: wsChildNofile, Max: wsChildNofile}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return err
		}
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("setrlimit NOFILE %d: %w", lim.Max, err)
		}
		if fit := (int(lim.Max) - wsFdMargin) / 2; n > fit {
			fmt.Fprintf(os.Stderr, "edgebench ws: cannot raise RLIMIT_NOFILE to %d (%v; no CAP_SYS_RESOURCE?): hard limit %d allows %d WebSockets (2 descriptors each in the Edge), not %d\n",
				wsChildNofile, err, lim.Max, fit, n)
			n = fit
		}
	}
	fmt.Fprintf(os.Stderr, "edgebench ws: RLIMIT_NOFILE %d for the children, %d WebSockets\n", lim.Cur, n)
	self, err := b.setup(ctx, "edgebench-ws.")
	if err != nil {
		return err
	}

	// 1. Two WebSocket backends (main, standby), one process on core 1.
	var wsAddr [2]string
	for i := range wsAddr {
		p, err := freePort(ipBackend)
		if err != nil {
			return err
		}
		wsAddr[i] = net.JoinHostPort(ipBackend, strconv.Itoa(p))
	}
	if err := b.start("wsbackend", nil, "taskset", "-c", "1", self, "wsbackend", "--listen", wsAddr[0], "--listen", wsAddr[1]); err != nil {
		return err
	}
	for _, a := range wsAddr {
		var wg sync.WaitGroup
		okBy := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			_, c, err := wsDial(ctx, a, "127.0.0.70", &wg)
			if err == nil {
				c.Close()
				break
			}
			if i >= 200 || time.Now().After(okBy) {
				return fmt.Errorf("ws backend %s: %w (log: %s)", a, err, b.tail("wsbackend"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		wg.Wait()
	}

	// 2. Stub node agents whose status changes at runtime.
	_, mainURL, err := b.dynStub(mainStatus)
	if err != nil {
		return err
	}
	standbyStub, standbyURL, err := b.dynStub(standbyStatus)
	if err != nil {
		return err
	}

	// 3. The Edge on core 0, one P.
	edgeAddr, err := b.startEdge(ctx, "ws", mainURL, standbyURL, wsAddr[0], wsAddr[1])
	if err != nil {
		return err
	}
	edgePid := b.lastPid()
	{
		var wg sync.WaitGroup
		okBy := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			_, c, err := wsDial(ctx, edgeAddr, "127.0.0.70", &wg)
			if err == nil {
				c.Close()
				break
			}
			if i >= 400 || time.Now().After(okBy) || ctx.Err() != nil {
				return fmt.Errorf("edge: %w (log: %s)", err, b.tail("edge"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		wg.Wait()
	}

	// 4. HAProxy on core 0, one thread, same backends.
	haPort, err := freePort(ipHAProxy)
	if err != nil {
		return err
	}
	ha := fmt.Sprintf(`global
    nbthread 1
    maxconn %d

defaults
    mode http
    maxconn %d
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h

frontend fe
    bind %s:%d
    default_backend be

backend be
    server main %s source %s
    server standby %s source %s backup
`, n+50, n+50, ipHAProxy, haPort, wsAddr[0], ipHAProxy, wsAddr[1], ipHAProxy)
	haPid, err := b.startHAProxy(ha)
	if err != nil {
		return err
	}
	haAddr := net.JoinHostPort(ipHAProxy, strconv.Itoa(haPort))
	{
		var wg sync.WaitGroup
		okBy := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			_, c, err := wsDial(ctx, haAddr, "127.0.0.70", &wg)
			if err == nil {
				c.Close()
				break
			}
			if i >= 200 || time.Now().After(okBy) || ctx.Err() != nil {
				return fmt.Errorf("haproxy: %w (log: %s)", err, b.tail("haproxy"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		wg.Wait()
	}

	// 5. HAProxy first: n idle WebSockets, memory, close them.
	var haWG sync.WaitGroup
	t0 := time.Now()
	_, haConns, err := wsOpen(ctx, haAddr, n, par, 60*time.Second, &haWG)
	if err != nil {
		closeAll(haConns)
		return fmt.Errorf("haproxy: %w (log: %s)", err, b.tail("haproxy"))
	}
	fmt.Fprintf(os.Stderr, "edgebench ws: haproxy: %d WebSockets open in %s\n", n, time.Since(t0).Round(time.Millisecond))
	time.Sleep(idle)
	haRSS, haHWM, err := memMB(haPid)
	if err != nil {
		closeAll(haConns)
		return err
	}
	fmt.Fprintf(os.Stderr, "edgebench ws: haproxy VmRSS %.1f MB VmHWM %.1f MB\n", haRSS, haHWM)
	closeAll(haConns)
	if !waitGroupFor(&haWG, 10*time.Second) {
		return errors.New("haproxy client readers did not end within 10s of closing")
	}

	// 6. The Edge: n idle WebSockets, memory.
	var edgeWG sync.WaitGroup
	t0 = time.Now()
	clients, conns, err := wsOpen(ctx, edgeAddr, n, par, 60*time.Second, &edgeWG)
	defer closeAll(conns)
	if err != nil {
		return fmt.Errorf("edge: %w (log: %s)", err, b.tail("edge"))
	}
	fmt.Fprintf(os.Stderr, "edgebench ws: edge: %d WebSockets open in %s\n", n, time.Since(t0).Round(time.Millisecond))
	time.Sleep(idle)
	for i, cl := range clients {
		if cl.closedAt.Load() != 0 {
			return fmt.Errorf("edge: WebSocket %d closed while idle, before the switch (log: %s)", i, b.tail("edge"))
		}
	}
	edgeRSS, edgeHWM, err := memMB(edgePid)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "edgebench ws: edge VmRSS %.1f MB VmHWM %.1f MB\n", edgeRSS, edgeHWM)

	// 7. The switch: xivo-standby becomes Active at epoch 2 (takeover).
	pushed, streams := standbyStub.set(`{"name":"xivo-standby","kind":"xivo","role":"standby","mode":"manual","revision":2,"status":"active","desired":"active","epoch":2,"since":"2026-01-01T00:00:10Z","services":[],"warnings":[]}`)
	if streams == 0 {
		return errors.New("the Edge had no event stream open on xivo-standby's stub")
	}
	allBy := pushed.Add(wsLeftOpenBy)
	if !waitGroupFor(&edgeWG, time.Until(allBy)) {
		fmt.Fprintln(os.Stderr, "edgebench ws: some WebSockets still open 5s after the switch")
	}
	var lat []time.Duration
	left := 0
	for _, cl := range clients {
		at := cl.closedAt.Load()
		if at == 0 || time.Unix(0, at).After(allBy) {
			left++
			continue
		}
		lat = append(lat, max(0, time.Unix(0, at).Sub(pushed)))
	}
	slices.Sort(lat)
	var maxLat, p99 time.Duration
	if len(lat) > 0 {
		maxLat = lat[len(lat)-1]
		p99 = lat[min(len(lat)-1, (len(lat)*99+99)/100-1)]
		fmt.Fprintf(os.Stderr, "edgebench ws: closed on switch: first %.0f ms, median %.0f ms, p99 %.0f ms, max %.0f ms\n",
			msf(lat[0]), msf(lat[len(lat)/2]), msf(p99), msf(maxLat))
	}
	// After the switch new WebSockets reach the standby.
	{
		var wg sync.WaitGroup
		_, c, err := wsDial(ctx, edgeAddr, "127.0.0.79", &wg)
		if err != nil {
			return fmt.Errorf("edge after the switch: %w (log: %s)", err, b.tail("edge"))
		}
		c.Close()
		wg.Wait()
	}

	// 8. The line.
	ratio := edgeRSS / haRSS
	verdict := "PASS"
	if edgeRSS >= wsMaxRSSMB || left > 0 || maxLat > wsMaxClose {
		verdict = "FAIL"
	}
	fmt.Printf("edge_websockets: %d idle WS: edge VmRSS %.1f MB (HWM %.1f MB) | haproxy VmRSS %.1f MB | x%.2f | closed on switch: max %.0f ms p99 %.0f ms, left open %d (targets: < 200 MB, all within 1 s) %s\n",
		n, edgeRSS, edgeHWM, haRSS, ratio, msf(maxLat), msf(p99), left, verdict)
	return nil
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// waitGroupFor waits for wg at most d; false when it timed out.
func waitGroupFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(max(d, 0)):
		return false
	}
}
