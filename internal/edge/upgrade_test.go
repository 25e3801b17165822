package edge

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/node"
)

// handBackend is a backend written by hand: it reads one request per
// connection and hands the connection to its handler.
type handBackend struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]struct{}
}

func startHandBackend(t *testing.T, ip string, handle func(c net.Conn, br *bufio.Reader, req *http.Request)) *handBackend {
	t.Helper()
	b := &handBackend{ln: mustListen(t, ip+":0"), cs: map[net.Conn]struct{}{}}
	b.addr = b.ln.Addr().String()
	b.wg.Go(func() {
		for {
			c, err := b.ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Go(func() {
				defer func() {
					c.Close()
					b.mu.Lock()
					delete(b.cs, c)
					b.mu.Unlock()
				}()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				handle(c, br, req)
			})
		}
	})
	t.Cleanup(func() {
		b.ln.Close()
		b.mu.Lock()
		for c := range b.cs {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

// rawRoute is the "web" route to two raw backends, or to a raw main and
// a web standby.
func rawRoute(main, standby string) Route {
	return Route{Name: "web",
		Main:    Backend{Name: "main-web", Node: "xivo-main", Address: main},
		Standby: Backend{Name: "standby-web", Node: "xivo-standby", Address: standby}}
}

const upgradeReq = "GET /ws?x=1 HTTP/1.1\r\nHost: edge.test\r\nUpgrade: websocket\r\n" +
	"Connection: Upgrade, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

const switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

// upgradeThrough sends the upgrade request, and extra in the same write,
// to the Edge and reads the answer's head.
func upgradeThrough(t *testing.T, addr string, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, upgradeReq+extra); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func TestUpgrade_NonSwitchingAnswerRelayed(t *testing.T) {
	seen := make(chan *http.Request, 1)
	main := startHandBackend(t, "127.0.0.2", func(c net.Conn, br *bufio.Reader, req *http.Request) {
		seen <- req
		io.WriteString(c, "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"X-Why: version\r\nSec-WebSocket-Version: 13\r\nContent-Length: 4\r\n\r\nnope")
	})
	standby := startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, reg := startEdge(t, Options{Routes: []Route{rawRoute(main.addr, standby.addr)}, Nodes: nodes(xm, xs)})

	_, br, resp := upgradeThrough(t, e.HTTPAddr(), "")
	body, err := io.ReadAll(io.LimitReader(resp.Body, 100))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 426 || string(body) != "nope" || resp.Header.Get("X-Why") != "version" ||
		resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("got %s %q %v", resp.Status, body, resp.Header)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d bytes after the answer", br.Buffered())
	}

	req := <-seen
	for k, want := range map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "X-Forwarded-For": "127.0.0.1",
		"X-Forwarded-Host": "edge.test", "X-Forwarded-Proto": "http", "X-Hop": "", "Keep-Alive": "",
		"Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "User-Agent": "",
	} {
		if got := strings.Join(req.Header.Values(k), ","); got != want {
			t.Errorf("backend saw %s %q, want %q", k, got, want)
		}
	}
	if req.Host != "edge.test" || req.RequestURI != "/ws?x=1" {
		t.Errorf("backend saw host %q uri %q", req.Host, req.RequestURI)
	}
	if got := counter(t, reg, "resilience_edge_requests_total", map[string]string{"backend": "main-web", "code": "426"}); got != 1 {
		t.Errorf("426 counted %v times", got)
	}
	waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
}

func TestUpgrade_EarlyBytesBothWays(t *testing.T) {
	got := make(chan string, 1)
	main := startHandBackend(t, "127.0.0.2", func(c net.Conn, br *bufio.Reader, req *http.Request) {
		// The 101 and the first bytes of the session in one write.
		io.WriteString(c, switching+"early from backend")
		// What the client sent with its request comes after the 101.
		p := make([]byte, len("early from client"))
		_, err := io.ReadFull(br, p)
		got <- fmt.Sprintf("%s %v", p, err)
		io.Copy(io.Discard, br)
	})
	standby := startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{rawRoute(main.addr, standby.addr)}, Nodes: nodes(xm, xs)})

	c, br, resp := upgradeThrough(t, e.HTTPAddr(), "early from client")
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("got %s %v", resp.Status, resp.Header)
	}
	p := make([]byte, len("early from backend"))
	if _, err := io.ReadFull(br, p); err != nil || string(p) != "early from backend" {
		t.Fatalf("client read %q %v", p, err)
	}
	if s := <-got; s != "early from client <nil>" {
		t.Fatalf("backend read %q", s)
	}
	c.Close()
	waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
}

func TestUpgrade_HalfClose(t *testing.T) {
	// The client's direction ends first: a megabyte goes up, the client
	// half-closes, and the echo still comes back in full, then EOF.
	t.Run("client first", func(t *testing.T) {
		main := startHandBackend(t, "127.0.0.2", func(c net.Conn, br *bufio.Reader, req *http.Request) {
			io.WriteString(c, switching)
			var all bytes.Buffer
			if _, err := io.Copy(&all, br); err != nil {
				return
			}
			c.Write(all.Bytes())
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, br)
		})
		standby := startWeb(t, "127.0.0.3", "standby")
		xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
		e, _, _ := startEdge(t, Options{Routes: []Route{rawRoute(main.addr, standby.addr)}, Nodes: nodes(xm, xs)})
		c, br, resp := upgradeThrough(t, e.HTTPAddr(), "")
		if resp.StatusCode != 101 {
			t.Fatalf("got %s", resp.Status)
		}
		up := make([]byte, 1<<20)
		rand.Read(up)
		if _, err := c.Write(up); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		down, err := io.ReadAll(br)
		if err != nil || !bytes.Equal(down, up) {
			t.Fatalf("echo: %d bytes, equal %v, err %v", len(down), bytes.Equal(down, up), err)
		}
		waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	})
	// The backend's direction ends first: the client reads EOF and can
	// still send.
	t.Run("backend first", func(t *testing.T) {
		got := make(chan string, 1)
		main := startHandBackend(t, "127.0.0.2", func(c net.Conn, br *bufio.Reader, req *http.Request) {
			io.WriteString(c, switching+"bye")
			c.(*net.TCPConn).CloseWrite()
			b, err := io.ReadAll(br)
			got <- fmt.Sprintf("%s %v", b, err)
		})
		standby := startWeb(t, "127.0.0.3", "standby")
		xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
		e, _, _ := startEdge(t, Options{Routes: []Route{rawRoute(main.addr, standby.addr)}, Nodes: nodes(xm, xs)})
		c, br, resp := upgradeThrough(t, e.HTTPAddr(), "")
		if resp.StatusCode != 101 {
			t.Fatalf("got %s", resp.Status)
		}
		if b, err := io.ReadAll(br); err != nil || string(b) != "bye" {
			t.Fatalf("client read %q %v", b, err)
		}
		if _, err := io.WriteString(c, "still here"); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		if s := <-got; s != "still here <nil>" {
			t.Fatalf("backend read %q", s)
		}
		waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	})
}

func TestUpgrade_SwitchClosesSessionsNoGoroutineLeft(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, reg := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})
	// A first session warms up what stays (the server's conns, pools).
	c0, _, _, err := wsDial(e.HTTPAddr(), "/ws")
	if err != nil {
		t.Fatal(err)
	}
	c0.Close()
	waitFor(t, time.Second, "warm-up session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	before := goleak.IgnoreCurrent()

	const clients = 50
	conns, readers := wsClients(t, e.HTTPAddr(), clients, "main")
	if n := e.Status().Routes[0].Backends[0].Sessions; n != clients {
		t.Fatalf("sessions = %d", n)
	}
	xs.set(node.Active, 2)
	t.Logf("closed %d sessions within %s", clients, waitAllClosed(t, conns, readers, time.Second))
	waitFor(t, time.Second, "sessions gone", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	if got := counter(t, reg, "resilience_edge_open_sessions", map[string]string{"backend": "main-web"}); got != 0 {
		t.Errorf("open_sessions gauge = %v", got)
	}
	for _, c := range conns {
		c.Close()
	}
	// Neither the relays nor anything of the sessions is left running.
	if err := goleak.Find(before); err != nil {
		t.Fatal(err)
	}
}

// A switch while the backend has not answered the upgrade yet ends the
// session: the backend connection is closed and nothing is relayed.
func TestUpgrade_SwitchDuringHandshake(t *testing.T) {
	closed := make(chan error, 1)
	main := startHandBackend(t, "127.0.0.2", func(c net.Conn, br *bufio.Reader, req *http.Request) {
		_, err := br.ReadByte() // until the Edge closes
		closed <- err
	})
	standby := startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{rawRoute(main.addr, standby.addr)}, Nodes: nodes(xm, xs)})
	c, err := net.DialTimeout("tcp", e.HTTPAddr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, upgradeReq)
	waitFor(t, 2*time.Second, "session registered", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 1 })
	xs.set(node.Active, 2)
	select {
	case err := <-closed:
		if err != io.EOF {
			t.Errorf("backend read %v, want EOF", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("backend connection still open after the switch")
	}
	waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == 101 {
		t.Fatal("101 relayed for a stopped session")
	}
}

func TestUpgrade_WebSocketOverTLS(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	cert, pool := selfSigned(t)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", e.HTTPAddr(),
		&tls.Config{RootCAs: pool, ServerName: "edge.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, upgradeReq)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if got, err := readFrame(br); err != nil || got != "main" {
		t.Fatalf("greeting %q %v", got, err)
	}
	big := strings.Repeat("x", 100<<10) // more than one TLS record
	for _, msg := range []string{"hello", big} {
		if err := writeFrame(c, msg, true); err != nil {
			t.Fatal(err)
		}
		if got, err := readFrame(br); err != nil || got != "main: "+msg {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	xs.set(node.Active, 2)
	if _, err := readClosed(c, br, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "session ended", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
}

// Close ends the open sessions and returns once their relays are done.
func TestUpgrade_CloseEndsSessions(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, reg := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 5 {
		c, br, _, err := wsDial(e.HTTPAddr(), "/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns, readers = append(conns, c), append(readers, br)
	}
	begun := time.Now()
	e.Close()
	if d := time.Since(begun); d > time.Second {
		t.Errorf("Close took %s", d)
	}
	for i, c := range conns {
		if _, err := readClosed(c, readers[i], time.Second); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if got := counter(t, reg, "resilience_edge_open_sessions", map[string]string{"backend": "main-web"}); got != 0 {
		t.Errorf("open_sessions gauge = %v after Close", got)
	}
}
