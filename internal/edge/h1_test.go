package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

// echoBackend answers what it saw of each request, so a test can check
// what the fast path sent and how it relayed the answer's framing.
func echoBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("X-Method", r.Method)
		h.Set("X-Body", string(b))
		h.Set("X-TE", strings.Join(r.TransferEncoding, ","))
		h.Set("X-Trailer", r.Trailer.Get("X-Sum"))
		for _, k := range []string{"Keep-Alive", "Proxy-Authorization", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Kept", "Te"} {
			h.Set("X-Saw-"+k, strings.Join(r.Header.Values(k), ","))
		}
		switch r.URL.Path {
		case "/chunked": // no length: net/http frames it chunked
			w.Write([]byte("part1,"))
			http.NewResponseController(w).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/hint":
			h.Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write([]byte("after hints"))
		case "/until-eof": // an HTTP/1.0-style answer, ended by closing
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.0 200 OK\r\nX-Old: yes\r\n\r\nall of it")
			brw.Flush()
			c.Close()
		default:
			w.Header().Set("Content-Length", fmt.Sprint(len("ok:")+len(b)))
			w.Write([]byte("ok:"))
			w.Write(b)
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

func fastPathEdge(t *testing.T, main string) *Edge {
	t.Helper()
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Nodes: nodes(xm, xs), Routes: []Route{{Name: "web",
		Main:    Backend{Name: "main-web", Node: "xivo-main", Address: main},
		Standby: Backend{Name: "standby-web", Node: "xivo-standby", Address: refusingAddr(t, "127.0.0.3")}}}})
	return e
}

// sendRaw writes raw to a new connection, which gives up after 5 s.
func sendRaw(t *testing.T, addr, raw string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// exchange writes raw to a new connection and reads n answers.
func exchange(t *testing.T, addr, raw string, n int, head bool) []*http.Response {
	t.Helper()
	c := sendRaw(t, addr, raw)
	defer c.Close()
	br := bufio.NewReader(c)
	var out []*http.Response
	for range n {
		method := "GET"
		if head {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
			resp, err = http.ReadResponse(br, &http.Request{Method: method}) // an interim answer
		}
		if err != nil {
			t.Fatalf("answer %d: %v", len(out)+1, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d body: %v", len(out)+1, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		out = append(out, resp)
	}
	return out
}

// untilClosed writes raw to a new connection and reads until the Edge
// closes it.
func untilClosed(t *testing.T, addr, raw string) string {
	t.Helper()
	c := sendRaw(t, addr, raw)
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: %v (read %q)", raw, err, b)
	}
	return string(b)
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

func TestFastPath_Framing(t *testing.T) {
	e := fastPathEdge(t, echoBackend(t))
	addr := e.HTTPAddr()

	t.Run("content-length body, pipelined with the next request", func(t *testing.T) {
		rs := exchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
			"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", 2, false)
		if got := bodyOf(rs[0]); got != "ok:hello" || rs[0].Header.Get("X-Method") != "POST" {
			t.Errorf("first: %q %v", got, rs[0].Header)
		}
		if got := bodyOf(rs[1]); got != "ok:" || rs[1].Header.Get("X-Method") != "GET" {
			t.Errorf("second: %q", got)
		}
	})
	t.Run("chunked request with trailer, chunked answer", func(t *testing.T) {
		rs := exchange(t, addr, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
			"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n", 1, false)
		r := rs[0]
		if got := bodyOf(r); got != "part1,part2" {
			t.Errorf("answer body %q", got)
		}
		if r.Header.Get("X-Body") != "abcde" || r.Header.Get("X-TE") != "chunked" || r.Header.Get("X-Trailer") != "5" {
			t.Errorf("backend saw body %q te %q trailer %q", r.Header.Get("X-Body"), r.Header.Get("X-TE"), r.Header.Get("X-Trailer"))
		}
		if len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" {
			t.Errorf("answer framing %v", r.TransferEncoding)
		}
	})
	t.Run("HEAD and 204 have no body", func(t *testing.T) {
		rs := exchange(t, addr, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", 1, true)
		if rs[0].StatusCode != 200 || rs[0].ContentLength != 3 {
			t.Errorf("HEAD: %d length %d", rs[0].StatusCode, rs[0].ContentLength)
		}
		rs = exchange(t, addr, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", 2, false)
		if rs[0].StatusCode != 204 || bodyOf(rs[1]) != "ok:" {
			t.Errorf("204 then GET: %d %q", rs[0].StatusCode, bodyOf(rs[1]))
		}
	})
	t.Run("1xx is passed on before the answer", func(t *testing.T) {
		s := untilClosed(t, addr, "GET /hint HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(s, "HTTP/1.1 103 Early Hints\r\n") || !strings.Contains(s, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(s, "after hints") {
			t.Errorf("got %q", s)
		}
	})
	t.Run("an answer ended by the backend closing ends the client connection", func(t *testing.T) {
		s := untilClosed(t, addr, "GET /until-eof HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(s, "HTTP/1.1 200 OK\r\n") || !strings.Contains(s, "Connection: close\r\n") || !strings.HasSuffix(s, "\r\n\r\nall of it") {
			t.Errorf("got %q", s)
		}
	})
	t.Run("malformed chunked body gets 400 and the connection closed", func(t *testing.T) {
		rs := exchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 1, false)
		if rs[0].StatusCode != 400 || !rs[0].Close {
			t.Errorf("got %d close=%v", rs[0].StatusCode, rs[0].Close)
		}
	})
}

func TestFastPath_Headers(t *testing.T) {
	e := fastPathEdge(t, echoBackend(t))
	rs := exchange(t, e.HTTPAddr(), "GET /a HTTP/1.1\r\nHost: voice.example:8080\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n"+
		"Proxy-Authorization: secret\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nTE: trailers\r\nX-Kept: 1\r\n\r\n", 1, false)
	h := rs[0].Header
	want := map[string]string{
		"X-Saw-Keep-Alive": "", "X-Saw-Proxy-Authorization": "", "X-Saw-X-Forwarded-For": "127.0.0.1",
		"X-Saw-X-Forwarded-Host": "voice.example:8080", "X-Saw-X-Forwarded-Proto": "http", "X-Saw-X-Kept": "1", "X-Saw-Te": "trailers",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h.Values("Connection")) != 0 {
		t.Errorf("hop-by-hop Connection passed to the client: %v", h.Values("Connection"))
	}
}

// What the fast path does not serve itself goes to net/http, which
// relays it as before.
func TestFastPath_HandOff(t *testing.T) {
	e := fastPathEdge(t, echoBackend(t))
	addr := e.HTTPAddr()
	for _, tc := range []struct{ name, raw, body string }{
		{"HTTP/1.0", "GET /a HTTP/1.0\r\nHost: x\r\n\r\n", "ok:"},
		{"escaped path", "GET /%61 HTTP/1.1\r\nHost: x\r\n\r\n", "ok:"},
		{"Expect: 100-continue", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "ok:hi"},
		{"a header named in Connection", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: X-Kept\r\nX-Kept: 1\r\n\r\n", "ok:"},
		{"after a fast request on the same connection", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /%61 HTTP/1.1\r\nHost: x\r\n\r\n", "ok:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := strings.Count(tc.raw, "Host:")
			rs := exchange(t, addr, tc.raw, n, false)
			if r := rs[n-1]; r.StatusCode != 200 || bodyOf(r) != tc.body {
				t.Errorf("got %d %q", r.StatusCode, bodyOf(r))
			}
		})
	}
}

// A backend that closes an idle connection without saying so: the next
// request, sent on the pooled connection, is sent again on a new one.
func TestFastPath_StalePooledConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			br := bufio.NewReader(c)
			if req, err := http.ReadRequest(br); err == nil {
				req.Body.Close()
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			time.Sleep(20 * time.Millisecond)
			c.Close() // idle, then gone
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	e := fastPathEdge(t, ln.Addr().String())
	const get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	c := sendRaw(t, e.HTTPAddr(), get)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 3 {
		if i > 0 {
			io.WriteString(c, get)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if b := bodyOf(resp); resp.StatusCode != 200 || b != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
		time.Sleep(100 * time.Millisecond) // the backend closes meanwhile
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("backend saw %d connections, want 3", n)
	}
}

// FuzzParseHead checks the fast path against net/http: a head it takes
// must be one net/http takes too, with the same host, path and body
// framing, so nothing can be smuggled between the two readings.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
		"PUT /u HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nTE: trailers\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q reqHead
		if !q.parse(b) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("fast path takes a head net/http refuses (%v): %q", err, b)
		}
		length := max(q.length, 0)
		if q.chunked {
			length = -1
		}
		if req.Host != q.host || req.URL.Path != q.path || req.ContentLength != length || req.Close != q.close {
			t.Fatalf("readings differ: net/http host %q path %q length %d close %v, fast path %+v", req.Host, req.URL.Path, req.ContentLength, req.Close, q)
		}
		for _, s := range q.keep {
			if s.start < q.lineEnd || s.end > len(b) || s.start >= s.end {
				t.Fatalf("span %v out of the head", s)
			}
		}
	})
}

// FuzzCopyChunked checks that a chunked body is copied verbatim and
// only when it is one net/http decodes.
func FuzzCopyChunked(f *testing.F) {
	for _, s := range []string{"0\r\n\r\n", "3\r\nabc\r\n0\r\nX: y\r\n\r\n", "a;x=y\r\n0123456789\r\n0\r\n\r\n", "zz\r\n", "3\r\nabcd\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		r := bytes.NewReader(b)
		src := bufio.NewReaderSize(r, 4096)
		err := copyChunked(w, src)
		w.Flush()
		if err != nil {
			return
		}
		used := len(b) - r.Len() - src.Buffered()
		if !bytes.Equal(out.Bytes(), b[:used]) {
			t.Fatalf("copy %q differs from input %q", out.Bytes(), b[:used])
		}
		if _, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b[:used]))); err != nil {
			t.Fatalf("copied a body net/http refuses (%v): %q", err, b[:used])
		}
	})
}

// A backend that dies under a request (it reads it, then closes without
// a byte of answer, as a crash does): the client gets the maintenance
// page and its Retry-After, not a bare 502.
func TestFastPath_BackendDiesUnderRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.Copy(io.Discard, req.Body)
			}
			c.(*net.TCPConn).SetLinger(0) // a reset, as the kernel sends for a killed process
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	e := fastPathEdge(t, ln.Addr().String())
	for _, raw := range []string{
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
	} {
		r := exchange(t, e.HTTPAddr(), raw, 1, false)[0]
		if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(bodyOf(r), "Service unavailable") {
			t.Errorf("%q: got %d %v", raw, r.StatusCode, r.Header)
		}
	}
}
