package edge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

var tlsConfigEmpty tls.Config

func mustListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var err error
	for try := 0; try < 50; try++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// readClosed reads from a WebSocket until the connection ends, for at
// most within, and says how long that took.
func readClosed(c net.Conn, br *bufio.Reader, within time.Duration) (time.Duration, error) {
	begun := time.Now()
	c.SetReadDeadline(begun.Add(within))
	for {
		if _, err := readFrame(br); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return 0, fmt.Errorf("still open after %s", within)
			}
			return time.Since(begun), nil
		}
	}
}

func TestEdge_WebSocket(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, reg := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})

	const clients = 20
	conns, readers := wsClients(t, e.HTTPAddr(), clients, "main")
	t.Run("frames pass both ways", func(t *testing.T) {
		if err := writeFrame(conns[0], "hello", true); err != nil {
			t.Fatal(err)
		}
		conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
		if got, err := readFrame(readers[0]); err != nil || got != "main: hello" {
			t.Fatalf("echo %q %v", got, err)
		}
		conns[0].SetReadDeadline(time.Time{})
	})
	if n := e.Status().Routes[0].Backends[0].Sessions; n != clients {
		t.Errorf("sessions = %d, want %d", n, clients)
	}
	if got := counter(t, reg, "resilience_edge_open_sessions", map[string]string{"route": "web", "backend": "main-web"}); got != clients {
		t.Errorf("open_sessions gauge = %v", got)
	}

	t.Run("a switch closes them and a reconnect lands on the new side", func(t *testing.T) {
		xs.set(node.Active, 2)
		t.Logf("closed %d sessions within %s of the status push", clients, waitAllClosed(t, conns, readers, 2*time.Second))
		c, _, greeting, err := wsDial(e.HTTPAddr(), "/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if greeting != "standby" {
			t.Fatalf("greeting %q after reconnect, want standby", greeting)
		}
		waitFor(t, time.Second, "old sessions gone", func() bool { return e.Status().Routes[0].Backends[0].Sessions == 0 })
	})
}

// wsClients opens n WebSockets through the Edge at addr, each greeted
// by want; they are closed at the end of the test.
func wsClients(t *testing.T, addr string, n int, want string) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		c, br, greeting, err := wsDial(addr, "/ws")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if greeting != want {
			t.Fatalf("greeting %q, want %q", greeting, want)
		}
		conns[i], readers[i] = c, br
	}
	return conns, readers
}

// waitAllClosed waits until every client has seen its session closed,
// each within d, and returns the slowest.
func waitAllClosed(t *testing.T, conns []net.Conn, readers []*bufio.Reader, d time.Duration) time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	durs := make([]time.Duration, len(conns))
	for i := range conns {
		wg.Go(func() { durs[i], errs[i] = readClosed(conns[i], readers[i], d) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	return slices.Max(durs)
}

func TestEdge_WebSocketDrain(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs), Drain: 300 * time.Millisecond})
	c, br, _, err := wsDial(e.HTTPAddr(), "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	xs.set(node.Active, 2)
	waitChosen(t, e, "web", "standby-web")
	// During the drain the old session still works; new ones go to the
	// new side.
	if err := writeFrame(c, "still there?", true); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if got, err := readFrame(br); err != nil || got != "main: still there?" {
		t.Fatalf("during drain: %q %v", got, err)
	}
	c2, _, greeting, err := wsDial(e.HTTPAddr(), "/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if greeting != "standby" {
		t.Errorf("new session went to %q", greeting)
	}
	d, err := readClosed(c, br, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("old session closed %s after the check", d)
}

func TestEdge_TLS(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	cert, pool := selfSigned(t)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "edge.test"}}}
	a := do(t, c, "GET", "https://"+e.HTTPAddr()+"/", "edge.test", nil)
	if a.code != 200 || a.body != "main" {
		t.Fatalf("got %d %q", a.code, a.body)
	}
	if got := a.h.Get("X-Seen-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto %q, want https", got)
	}
	if !e.Status().TLS {
		t.Error("status says no TLS")
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge.test"},
		DNSNames: []string{"edge.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// rawRequest sends raw bytes to the Edge and returns the status line of
// its answer.
func rawRequest(t *testing.T, addr string, req []byte) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	go c.Write(req) // the Edge may answer (and close) before it read everything
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestEdge_BadInput(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs),
		ReadHeaderTimeout: 300 * time.Millisecond, ResponseHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4 << 10})
	addr := e.HTTPAddr()

	t.Run("malformed request gets 400", func(t *testing.T) {
		for _, req := range []string{
			"GARBAGE\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			"GET / HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
		} {
			if got := rawRequest(t, addr, []byte(req)); !strings.HasPrefix(got, "HTTP/1.1 400") {
				t.Errorf("%q: got %q, want 400", req, got)
			}
		}
	})
	t.Run("oversized headers get 431", func(t *testing.T) {
		req := "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 64<<10) + "\r\n\r\n"
		if got := rawRequest(t, addr, []byte(req)); !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("got %q, want 431", got)
		}
	})
	t.Run("slowloris is cut while others are served", func(t *testing.T) {
		const slow = 50
		var wg sync.WaitGroup
		cut := make([]time.Duration, slow)
		for i := range slow {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					return
				}
				defer c.Close()
				begun := time.Now()
				c.SetDeadline(begun.Add(3 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n")
				// One header line every 50ms, never the end of headers.
				go func() {
					for j := 0; j < 60; j++ {
						time.Sleep(50 * time.Millisecond)
						if _, err := fmt.Fprintf(c, "X-%d: y\r\n", j); err != nil {
							return
						}
					}
				}()
				io.Copy(io.Discard, c) // returns when the Edge closes it
				cut[i] = time.Since(begun)
			})
		}
		time.Sleep(100 * time.Millisecond)
		begun := time.Now()
		if a := get(t, e, "/"); a.body != "main" {
			t.Errorf("good client: %d %q", a.code, a.body)
		}
		t.Logf("good client served in %s among %d slow ones", time.Since(begun), slow)
		wg.Wait()
		for i, d := range cut {
			if d == 0 || d > 2*time.Second {
				t.Fatalf("slow client %d cut after %s, want about ReadHeaderTimeout", i, d)
			}
		}
	})
	t.Run("a hanging backend gets 504 within ResponseHeaderTimeout", func(t *testing.T) {
		begun := time.Now()
		a := get(t, e, "/hang")
		d := time.Since(begun)
		if a.code != http.StatusGatewayTimeout {
			t.Errorf("got %d %q, want 504", a.code, a.body)
		}
		if d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("answered after %s, want about 300ms", d)
		}
	})
	t.Run("the edge still serves", func(t *testing.T) {
		if a := get(t, e, "/"); a.body != "main" {
			t.Errorf("got %d %q", a.code, a.body)
		}
	})
}

func TestEdge_SwitchPlainHTTP(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)},
		func(e *Edge) { e.longGrace = 300 * time.Millisecond })
	c := client()
	url := "http://" + e.HTTPAddr()

	// A stream (say SSE) and a slow request are under way on main.
	resp, err := c.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "data: main\n" {
		t.Fatalf("stream: %q", line)
	}
	slow := make(chan answer, 1)
	go func() {
		resp, err := c.Get(url + "/slow")
		if err != nil {
			slow <- answer{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- answer{code: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(50 * time.Millisecond)

	xs.set(node.Active, 2) // takeover
	waitChosen(t, e, "web", "standby-web")
	if a := get(t, e, "/"); a.body != "standby" {
		t.Fatalf("new request went to %q", a.body)
	}
	t.Run("a request in flight finishes on the old side", func(t *testing.T) {
		if a := <-slow; a.code != 200 || a.body != "main" {
			t.Fatalf("slow request: %d %q", a.code, a.body)
		}
	})
	t.Run("a stream left on the old side is closed after the grace", func(t *testing.T) {
		begun := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, br)
			done <- err
		}()
		select {
		case <-done:
			t.Logf("stream closed %s after the switch was seen", time.Since(begun))
		case <-time.After(3 * time.Second):
			t.Fatal("stream to the old side still open")
		}
	})
}
