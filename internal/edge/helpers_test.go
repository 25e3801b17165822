package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The real client fits once named.
var _ StatusEventer = (*apiclient.Client)(nil)

// fakeNode is a node agent in memory: statuses pushed with set reach the
// Edge through its event stream, as an agent's SSE would.
type fakeNode struct {
	name string

	mu   sync.Mutex
	snap node.Snapshot
	down bool
	subs map[chan node.Snapshot]struct{}
	cut  chan struct{} // closed to break the open streams
}

func newFakeNode(name string, st node.Status, epoch uint64) *fakeNode {
	return &fakeNode{
		name: name,
		snap: node.Snapshot{Name: name, Kind: "xivo", Revision: 1, Status: st, Epoch: epoch},
		subs: map[chan node.Snapshot]struct{}{},
		cut:  make(chan struct{}),
	}
}

func (f *fakeNode) Name() string { return f.name }

func (f *fakeNode) Status(ctx context.Context) (node.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return node.Snapshot{}, errors.New("connect: connection refused")
	}
	return f.snap, nil
}

func (f *fakeNode) Events(ctx context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return errors.New("connect: connection refused")
	}
	ch := make(chan node.Snapshot, 64)
	f.subs[ch] = struct{}{}
	first, cut := f.snap, f.cut
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	fn(first)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cut:
			return errors.New("events: stream ended")
		case s := <-ch:
			fn(s)
		}
	}
}

// set changes the node's status and pushes it to the open streams.
func (f *fakeNode) set(st node.Status, epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap.Revision++
	f.snap.Status, f.snap.Epoch = st, epoch
	for ch := range f.subs {
		select {
		case ch <- f.snap:
		default:
		}
	}
}

// setDown makes the agent unreachable (streams break, polls fail) or
// reachable again.
func (f *fakeNode) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	if down {
		close(f.cut)
		f.cut = make(chan struct{})
	}
}

// web is an HTTP backend that says which side answered, has a health
// endpoint to flip, a WebSocket endpoint and an endpoint that hangs.
type web struct {
	side    string
	srv     *httptest.Server
	addr    string
	healthy atomic.Bool
	gets    atomic.Int64
	posts   atomic.Int64
	stop    chan struct{}

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startWeb(t *testing.T, ip, side string) *web {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	return startWebOn(t, ln, side)
}

func startWebOn(t *testing.T, ln net.Listener, side string) *web {
	t.Helper()
	w := &web{side: side, stop: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	w.healthy.Store(true)
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	w.srv.Listener.Close()
	w.srv.Listener = ln
	w.srv.Start()
	w.addr = ln.Addr().String()
	t.Cleanup(w.close)
	return w
}

func (w *web) close() {
	close(w.stop)
	w.mu.Lock()
	for c := range w.conns {
		c.Close()
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.srv.Close()
}

func (w *web) serve(rw http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		if !w.healthy.Load() {
			http.Error(rw, "sick", http.StatusServiceUnavailable)
		}
		return
	case "/ws":
		w.websocket(rw, r)
		return
	case "/slow":
		select {
		case <-time.After(200 * time.Millisecond):
			io.WriteString(rw, w.side)
		case <-r.Context().Done():
		case <-w.stop:
		}
		return
	case "/stream":
		rc := http.NewResponseController(rw)
		rw.Header().Set("Content-Type", "text/event-stream")
		for {
			if _, err := io.WriteString(rw, "data: "+w.side+"\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-w.stop:
				return
			}
		}
	case "/hang":
		select {
		case <-r.Context().Done():
		case <-w.stop:
		}
		return
	}
	if r.Method == http.MethodPost {
		w.posts.Add(1)
	} else {
		w.gets.Add(1)
	}
	h := rw.Header()
	h.Set("X-Side", w.side)
	h.Set("X-Seen-Host", r.Host)
	h.Set("X-Seen-For", strings.Join(r.Header.Values("X-Forwarded-For"), ","))
	h.Set("X-Seen-Fwd-Host", r.Header.Get("X-Forwarded-Host"))
	h.Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
	io.WriteString(rw, w.side)
}

// websocket completes a WebSocket handshake, greets with its side's name
// and echoes text frames until the connection closes.
func (w *web) websocket(rw http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !isUpgrade(r.Header) || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(rw, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		return
	}
	w.mu.Lock()
	w.conns[conn] = struct{}{}
	w.wg.Add(1)
	w.mu.Unlock()
	defer func() {
		conn.Close()
		w.mu.Lock()
		delete(w.conns, conn)
		w.mu.Unlock()
		w.wg.Done()
	}()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	writeFrame(brw, w.side, false)
	if brw.Flush() != nil {
		return
	}
	for {
		msg, err := readFrame(brw.Reader)
		if err != nil {
			return
		}
		writeFrame(brw, w.side+": "+msg, false)
		if brw.Flush() != nil {
			return
		}
	}
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// writeFrame writes one unfragmented text frame (masked, as clients must).
func writeFrame(w io.Writer, payload string, mask bool) error {
	hdr := []byte{0x81, 0}
	n := len(payload)
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n < 1<<16:
		hdr[1] = 126
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr[1] = 127
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	p := []byte(payload)
	if mask {
		hdr[1] |= 0x80
		var key [4]byte
		rand.Read(key[:])
		hdr = append(hdr, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	_, err := w.Write(append(hdr, p...))
	return err
}

// readFrame reads one frame; a close frame reads as io.EOF.
func readFrame(r *bufio.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return "", errors.New("frame too large")
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return "", err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return "", err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	if h[0]&0x0f == 8 {
		return "", io.EOF
	}
	return string(p), nil
}

// wsDial opens a WebSocket through the Edge by hand and returns the
// connection, its reader and the greeting (the side that answered).
func wsDial(addr, path string) (net.Conn, *bufio.Reader, string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, nil, "", err
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: edge.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, nil, "", fmt.Errorf("handshake: %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		c.Close()
		return nil, nil, "", fmt.Errorf("handshake: accept %q", got)
	}
	greeting, err := readFrame(br)
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	c.SetDeadline(time.Time{})
	return c, br, greeting, nil
}

// sipServer is a SIP service stand-in on UDP and TCP (one port) that
// answers OPTIONS with 200 and a Server header naming its side.
type sipServer struct {
	side string
	addr string
	udp  *net.UDPConn
	tcp  net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]struct{}
}

func startSIP(t *testing.T, ip, side string) *sipServer {
	t.Helper()
	s := &sipServer{side: side, cs: map[net.Conn]struct{}{}}
	for try := 0; ; try++ {
		tcp, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		ua, _ := net.ResolveUDPAddr("udp", tcp.Addr().String())
		udp, err := net.ListenUDP("udp", ua)
		if err != nil {
			tcp.Close()
			if try < 10 {
				continue
			}
			t.Fatal(err)
		}
		s.tcp, s.udp, s.addr = tcp, udp, tcp.Addr().String()
		break
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(func() {
		s.udp.Close()
		s.tcp.Close()
		s.mu.Lock()
		for c := range s.cs {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sipServer) answer(req []byte) []byte {
	if !bytes.HasPrefix(req, []byte("OPTIONS ")) {
		return nil
	}
	callID := ""
	for _, line := range strings.Split(string(req), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
			callID = v
		}
	}
	return []byte("SIP/2.0 200 OK\r\nCall-ID: " + callID + "\r\nServer: " + s.side + "\r\nContent-Length: 0\r\n\r\n")
}

func (s *sipServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if a := s.answer(buf[:n]); a != nil {
			s.udp.WriteToUDPAddrPort(a, from)
		}
	}
}

func (s *sipServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.cs[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.cs, c)
				s.mu.Unlock()
			}()
			br := bufio.NewReader(c)
			for {
				msg, err := readSIP(br)
				if err != nil {
					return
				}
				if a := s.answer(msg); a != nil {
					if _, err := c.Write(a); err != nil {
						return
					}
				}
			}
		}()
	}
}

// readSIP reads one body-less SIP message from a stream.
func readSIP(br *bufio.Reader) ([]byte, error) {
	var msg []byte
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		msg = append(msg, line...)
		if len(line) <= 2 && len(msg) > 2 {
			return msg, nil
		}
	}
}

func sipOptions(callID string) []byte {
	return []byte("OPTIONS sip:edge.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK" + callID + "\r\nCall-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
}

// serverOf returns the Server header of a SIP answer.
func serverOf(answer []byte) string {
	for _, line := range strings.Split(string(answer), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Server: "); ok {
			return v
		}
	}
	return ""
}

// switchLog collects OnSwitch calls.
type switchLog struct {
	mu sync.Mutex
	sw []Switch
}

func (l *switchLog) add(s Switch) {
	l.mu.Lock()
	l.sw = append(l.sw, s)
	l.mu.Unlock()
}

func (l *switchLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.sw {
		out = append(out, s.Route+":"+s.From+">"+s.To)
	}
	return out
}

func testLogger() *slog.Logger {
	if os.Getenv("EDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startEdge starts an Edge with test timings on 127.0.0.1 and closes it
// at the end of the test. tweak may adjust internals before Start.
func startEdge(t *testing.T, opts Options, tweak ...func(*Edge)) (*Edge, *switchLog, *prometheus.Registry) {
	t.Helper()
	if opts.HTTPListen == "" && len(opts.Routes) > 0 {
		opts.HTTPListen = "127.0.0.1:0"
	}
	if opts.NodePoll == 0 {
		opts.NodePoll = 50 * time.Millisecond
	}
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = 300 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	log := &switchLog{}
	opts.OnSwitch = log.add
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range tweak {
		fn(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, log, reg
}

func nodes(ns ...*fakeNode) []NodeSource {
	out := make([]NodeSource, len(ns))
	for i, n := range ns {
		out[i] = n
	}
	return out
}

// webRoute is the route most tests use: "web", any host.
func webRoute(main, standby *web) Route {
	return Route{Name: "web",
		Main:    Backend{Name: "main-web", Node: "xivo-main", Address: main.addr},
		Standby: Backend{Name: "standby-web", Node: "xivo-standby", Address: standby.addr}}
}

// client is a test HTTP client without keep-alive, so no connection
// outlives a test.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

type answer struct {
	code int
	body string
	h    http.Header
}

func do(t *testing.T, c *http.Client, method, url, host string, body io.Reader) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

func get(t *testing.T, e *Edge, path string) answer {
	t.Helper()
	return do(t, client(), "GET", "http://"+e.HTTPAddr()+path, "", nil)
}

// waitChosen waits (bounded) until route's chosen backend is want.
func waitChosen(t *testing.T, e *Edge, route, want string) RouteStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, r := range e.Status().Routes {
			if r.Name == route && r.Chosen == want {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s: chosen is not %q within 2s: %+v", route, want, e.Status().Routes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond every 5ms for at most within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter reads a counter or gauge from the registry by name and labels.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// refusingAddr is an address on ip where nothing listens.
func refusingAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
