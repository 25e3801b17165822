package edge

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/xivo-resilience/resilience/internal/node"
)

// rawBackend answers every request on a keep-alive connection with the
// same bytes, allocating nothing per request, so that a benchmark counts
// the proxy's allocations rather than a backend's.
func rawBackend(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.Cleanup(func() { c.Close() })
			wg.Go(func() {
				br := bufio.NewReader(c)
				for {
					// Requests have no body: read up to the empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// discardWriter is a ResponseWriter reused across requests.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func benchServe(b *testing.B, h http.Handler) {
	req, _ := http.NewRequest("GET", "http://edge.test/index.html", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkEdge_ServeHTTP measures one proxied GET through the Edge's
// handler (route match, choice, ReverseProxy, Transport).
func BenchmarkEdge_ServeHTTP(b *testing.B) {
	addr := rawBackend(b)
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, err := New(Options{HTTPListen: "127.0.0.1:0", Nodes: nodes(xm, xs), Routes: []Route{{Name: "web",
		Main:    Backend{Name: "main-web", Node: "xivo-main", Address: addr},
		Standby: Backend{Name: "standby-web", Node: "xivo-standby", Address: "127.0.0.3:1"}}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	benchServe(b, e)
}

// BenchmarkReverseProxy_Default is the stdlib's single-host proxy with
// its defaults, for comparison.
func BenchmarkReverseProxy_Default(b *testing.B) {
	addr := rawBackend(b)
	u, _ := url.Parse("http://" + addr)
	p := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	p.Transport = tr
	benchServe(b, p)
}
