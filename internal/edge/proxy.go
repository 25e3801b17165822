package edge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The net/http request path, for what the fast path (h1.go) hands off
// and for everything under TLS: match a route (string compares), load its
// chosen target (one atomic load), hand the request to that target's
// ReverseProxy. The Edge's own part allocates nothing on a proxied
// request but the two X-Forwarded header values; ReverseProxy's copy
// buffers come from a pool, and the request counters are resolved once
// per target and status code.

// ServeHTTP relays one request to its route's chosen backend, or answers
// the maintenance page when none is usable.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	rt := e.match(r.Host, r.URL.Path)
	if rt == nil {
		e.m.notFound.Inc()
		http.Error(w, "no route for this host and path", http.StatusNotFound)
		return
	}
	t := rt.cur.Load()
	if t == nil {
		rt.unavailable.Inc()
		e.unavailable(w)
		return
	}
	if isUpgrade(r.Header) {
		e.serveUpgrade(w, r, rt, t)
		return
	}
	t.proxy.ServeHTTP(w, r)
}

// serveUpgrade relays a WebSocket (or any upgraded) session as a session
// of its target, so that a switch can end it: the session's stop hangs
// up on the client at once and its relays then close both connections
// (see upgrade.go). The registration is checked against the route's
// choice afterwards, so a session that raced a switch cannot slip past
// the switch's sweep.
func (e *Edge) serveUpgrade(w http.ResponseWriter, r *http.Request, rt *route, t *target) {
	for try := 0; ; try++ {
		s, ctx := newUpgradeSession(r.Context())
		id, ok := t.sessions.add(s.stop)
		if !ok {
			s.stop()
			e.unavailable(w) // closing
			return
		}
		if rt.cur.Load() == t {
			s.t, s.id = t, id
			t.sessGauge.Inc()
			e.relayUpgrade(ctx, w, r, s) // ends the session when it is over
			return
		}
		t.sessions.remove(id)
		s.stop()
		if t = rt.cur.Load(); t == nil || try == 2 {
			rt.unavailable.Inc()
			e.unavailable(w)
			return
		}
	}
}

// unavailable answers 503 with the maintenance page. The header values
// are shared by every answer: net/http only reads them.
func (e *Edge) unavailable(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = e.htmlType
	h["Retry-After"] = e.retryAfter
	h["Cache-Control"] = e.noStore
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(e.page)
}

// match finds the route of a request: routes naming a host before the
// others, longer prefixes first (see sortRoutes).
func (e *Edge) match(host, path string) *route {
	host = stripPort(host)
	for _, r := range e.http {
		if r.host != "" && !strings.EqualFold(r.host, host) {
			continue
		}
		if hasPathPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

func sortRoutes(rs []*route) {
	sort.SliceStable(rs, func(i, j int) bool {
		if (rs[i].host != "") != (rs[j].host != "") {
			return rs[i].host != ""
		}
		return len(rs[i].prefix) > len(rs[j].prefix)
	})
}

func stripPort(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

func hasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// isUpgrade is ReverseProxy's own test for a protocol switch.
func isUpgrade(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && hasToken(h["Connection"], "upgrade")
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(item), token) {
				return true
			}
		}
	}
	return false
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// httpTarget gives a target its transport and proxy. Each target has its
// own Transport so that its connections can be retired on a switch
// without touching the other side's.
func (e *Edge) httpTarget(t *target) {
	t.addr = t.b.cfg.Address
	t.tr = &http.Transport{
		DialContext:           t.dial,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: e.opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding goes through as is.
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
	t.proxy = &httputil.ReverseProxy{
		Rewrite:      t.rewrite,
		Transport:    t,
		BufferPool:   &e.bufs,
		ErrorHandler: t.proxyError,
		ErrorLog:     slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

// rewrite points the request at the backend. The Host header is kept
// (backends build links for the address users see). The Edge is the
// first proxy users meet, so X-Forwarded-For is the client's address
// only: what a client claims there is not passed on.
func (t *target) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.addr
	h := pr.Out.Header
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Host"] = []string{pr.In.Host}
	if pr.In.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
}

// RoundTrip sends a request to the target's backend. A request that
// could not even connect, idempotent and without a body (nothing to
// replay), is sent once to the other side if that side is usable: this
// covers the requests that raced a switch to a backend already gone.
func (t *target) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.tr.RoundTrip(req)
	if err == nil {
		t.count(resp.StatusCode)
		return resp, nil
	}
	var de *dialError
	if !errors.As(err, &de) || !retryable(req) || req.Context().Err() != nil || !t.other.usable.Load() {
		return nil, err
	}
	o := t.other
	out := req.Clone(req.Context())
	out.URL.Host = o.addr
	resp, err = o.tr.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	t.e.m.retries.WithLabelValues(t.r.name).Inc()
	o.count(resp.StatusCode)
	return resp, nil
}

func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	// An upgrade is a session tied to the target it was registered on;
	// its client reconnects.
	return (req.Body == nil || req.Body == http.NoBody) && !isUpgrade(req.Header)
}

// dialError marks a failure to connect, as opposed to a failure after the
// request was sent: only the former is safe to retry elsewhere.
type dialError struct{ err error }

func (d *dialError) Error() string { return "connect to backend: " + d.err.Error() }
func (d *dialError) Unwrap() error { return d.err }

// dial connects to the backend, counts failures for passive detection
// and tracks the connection so a switch can close it.
func (t *target) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.e.dialer.DialContext(ctx, network, addr)
	if err != nil {
		if ctx.Err() == nil {
			t.b.connectFailed(err)
		}
		return nil, &dialError{err}
	}
	t.b.connected()
	return t.conns.track(c), nil
}

// proxyError answers a request that the backend did not: 503 with the
// maintenance page when it could not be reached, 504 when it did not
// answer in time, 502 otherwise.
func (t *target) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var de *dialError
	var ne net.Error
	switch {
	case r.Context().Err() != nil:
		// The client left, or its session was closed by a switch:
		// nobody is waiting for an answer.
		t.count(499)
		return
	case errors.As(err, &de):
		t.failed(http.StatusServiceUnavailable, "edge backend unreachable", err)
		t.e.unavailable(w)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		t.failed(http.StatusGatewayTimeout, "edge backend timeout", err)
		http.Error(w, "the server behind the edge did not answer in time", http.StatusGatewayTimeout)
	default:
		t.failed(http.StatusBadGateway, "edge backend error", err)
		http.Error(w, "the server behind the edge failed to answer", http.StatusBadGateway)
	}
}

// failed logs and counts a request its backend did not answer, which
// the Edge answers with code; both request paths use it (h1.go and
// net/http's).
func (t *target) failed(code int, msg string, err error) {
	t.e.log.Warn(msg, "route", t.r.name, "backend", t.b.cfg.Name, "err", err)
	t.count(code)
}

// count adds a request answered with code to the target's counters.
func (t *target) count(code int) {
	if code < 0 || code >= len(t.codes) {
		code = 0
	}
	c := t.codes[code].Load()
	if c == nil {
		ctr := t.e.m.requests.WithLabelValues(t.r.name, t.b.cfg.Name, strconv.Itoa(code))
		c = &ctr
		t.codes[code].Store(c)
	}
	(*c).Inc()
}

// closeIdle closes the target's idle backend connections: after a
// switch no new request will use them.
func (t *target) closeIdle() {
	if t.tr != nil {
		t.tr.CloseIdleConnections()
	}
	t.pool.closeIdle()
}

// closeConns closes every connection the target holds to its backend.
func (t *target) closeConns() {
	t.closeIdle()
	t.conns.closeAll()
}

func (b *backend) connectFailed(err error) {
	b.e.m.connectFailures.WithLabelValues(b.cfg.Name).Inc()
	if b.fails.Add(1) == int32(b.e.opts.MarkDownAfter) {
		b.e.do(func() { b.e.markDown(b, err) })
	}
}

func (b *backend) connected() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers. It pools array
// pointers, so Put does not allocate a slice header as a pool of []byte
// would.
type bufferPool struct{ p sync.Pool }

const bufSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[bufSize]byte); ok {
		return v[:]
	}
	return new([bufSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == bufSize {
		b.p.Put((*[bufSize]byte)(buf))
	}
}
