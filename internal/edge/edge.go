// Package edge is the single entry point of a resilient XiVO deployment,
// as the seed's "Edge Deployment" section describes: users keep one
// address (one FQDN for the web pages and WebSockets, one SIP address for
// the phones) and the Edge relays each service to whichever side, Main or
// Standby, is Active. On a failover or a failback users only refresh the
// page.
//
// The side is decided by the nodes themselves, not guessed from the
// traffic: a backend is used only when the node it belongs to is Active
// with the highest epoch of its pair (DESIGN section 2: a stale Active node
// is never routed to), its health check passes and it is not refusing
// connections. The nodes' event streams push every change, so a takeover
// is followed within milliseconds; active checks and failed connections
// catch services that die under a node that still says Active.
//
// The request path reads the choice with one atomic load per request; all
// the deciding happens on one goroutine that owns the state.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xivo-resilience/resilience/internal/node"
)

// Check is an active health check of a backend.
type Check struct {
	// Path is the HTTP path to GET on the backend; a 2xx or 3xx answer
	// passes. Empty means a TCP connect, which is what SIP backends use.
	Path string
	// Interval between checks (default 2s).
	Interval time.Duration
	// Timeout of one check (default 1s, or Interval if shorter). Checks
	// of a backend never overlap: a slow one delays the next.
	Timeout time.Duration
	// Rise is how many passes in a row bring a down backend up (default 2).
	Rise int
	// Fall is how many failures in a row take an up backend down
	// (default 3).
	Fall int
}

// Backend is one side of a route: a service on a node.
type Backend struct {
	// Name names the backend in the status, the metrics and the switch
	// history, e.g. "xivo-main-web". A name used in several routes means
	// the same backend, checked once.
	Name string
	// Node is the xivo or cc node whose status decides whether the
	// backend may be used, e.g. "xivo-main".
	Node string
	// Address is host:port: HTTP backends are reached as http://Address,
	// SIP backends on the same port over UDP and TCP.
	Address string
	// Health is an optional active check.
	Health *Check
}

// Route relays HTTP (WebSocket included) for one host and path prefix.
type Route struct {
	Name string
	// Host is the HTTP Host to match, without port ("" matches any).
	Host string
	// PathPrefix is the path prefix to match ("/" by default). A prefix
	// matches whole segments: "/api" takes "/api" and "/api/x", not "/apix".
	PathPrefix    string
	Main, Standby Backend
}

// SIPRoute relays SIP at layer 4: UDP datagrams per client flow, TCP
// connections one for one.
type SIPRoute struct {
	Name string
	// Listen is the Edge's SIP address, e.g. "127.0.0.30:5060"; UDP and TCP
	// share its port.
	Listen        string
	UDP, TCP      bool
	Main, Standby Backend
}

// NodeSource is a xivo or cc node's API as the Edge uses it. An
// *apiclient.Client fits once given a name: see Named.
type NodeSource interface {
	Name() string
	Status(ctx context.Context) (node.Snapshot, error)
	Events(ctx context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error
}

// StatusEventer is the part of a node's API client that Named wraps;
// *apiclient.Client is one.
type StatusEventer interface {
	Status(ctx context.Context) (node.Snapshot, error)
	Events(ctx context.Context, idle time.Duration, fn func(node.Snapshot), beat func()) error
}

// Named gives a node's API client the name the routes use for it.
func Named(name string, c StatusEventer) NodeSource { return named{name, c} }

type named struct {
	name string
	StatusEventer
}

func (n named) Name() string { return n.name }

// Switch is one change of a route's chosen backend, for the history.
type Switch struct {
	Route string
	// From and To are backend names; "" is none (503).
	From, To string
	Reason   string
	At       time.Time
}

// Options are an Edge's routes, dependencies and limits. Zero values take
// the defaults given.
type Options struct {
	// HTTPListen is the address of the HTTP (or HTTPS) entry point;
	// required when there are Routes.
	HTTPListen string
	// TLS, when set, terminates TLS with its certificates.
	TLS    *tls.Config
	Routes []Route
	SIP    []SIPRoute
	// Nodes lists every node a backend names.
	Nodes []NodeSource
	// Drain is a grace before WebSocket and SIP TCP sessions to the old
	// backend are closed on a switch (0: closed at once).
	Drain time.Duration
	// RetryAfter is sent with the maintenance page (default 5s).
	RetryAfter time.Duration
	// MaintenancePage is the HTML served with 503 when no backend is
	// usable (default a short built-in page).
	MaintenancePage []byte
	Logger          *slog.Logger
	// Registerer takes the Edge's metrics (default a private registry).
	Registerer prometheus.Registerer
	// OnSwitch is called on every switch, the first choice at start-up
	// included, in order, from the goroutine that decides: it must not
	// block. Status may be called from it.
	OnSwitch func(Switch)

	// MarkDownAfter is how many failed connections in a row mark a
	// backend down until its next passing check or its node's next change
	// (default 3).
	MarkDownAfter int
	// NodePoll paces status polls while a node's event stream is down
	// (default 1s).
	NodePoll time.Duration
	// NodeTimeout bounds one status poll (default 1s).
	NodeTimeout time.Duration
	// NodeIdle is how long a silent event stream is trusted (default 6s:
	// three heartbeats of an agent).
	NodeIdle time.Duration

	// DialTimeout bounds a connection to a backend (default 1s): a dead
	// backend must fail fast so that the request can be retried.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's answer
	// (default 30s); past it the client gets 504.
	ResponseHeaderTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (default 5s), against slowloris.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle client keep-alive connections (default 60s).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers (default 32 KiB); larger ones
	// get 431.
	MaxHeaderBytes int
	// MaxConns bounds open client HTTP connections, WebSockets included
	// (default 20000); further clients wait in the listen backlog.
	MaxConns int
	// SIPFlowIdle expires a UDP flow without traffic (default 3m, more
	// than a usual registration refresh).
	SIPFlowIdle time.Duration
	// SIPMaxFlows bounds UDP flows per SIP route (default 4096); datagrams
	// from further clients are dropped.
	SIPMaxFlows int
}

const defaultPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Service unavailable</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>Service unavailable</h1>
<p>The telephony service is switching between its servers or under maintenance.
This page will work again in a moment: please refresh it.</p>
</body></html>
`

// Edge relays HTTP and SIP to the Active side of each route.
type Edge struct {
	opts Options
	log  *slog.Logger
	m    *metrics

	nodes    []*nodeWatch
	backends []*backend
	http     []*route // in match order
	routes   []*route // HTTP then SIP, in config order
	sips     []*sipRelay

	srv      *http.Server
	front    *front // plaintext HTTP/1.1 fast path (nil under TLS)
	httpLn   net.Listener
	httpAddr atomic.Pointer[string]
	dialer   net.Dialer
	checker  *http.Client
	bufs     bufferPool
	inflight atomic.Int64 // HTTP handlers running

	// Header values shared by every maintenance answer; net/http only
	// reads them.
	page        []byte
	retryAfter  []string
	htmlType    []string
	noStore     []string
	longGrace   time.Duration // closes plain HTTP conns left to an old backend
	probeEvery  time.Duration // recovery probe of a passively-down backend without a check
	status      atomic.Pointer[Status]
	changed     chan struct{} // one pending signal: the status changed
	ops         chan func()
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	startOnce   sync.Once
	closeOnce   sync.Once
	started     atomic.Bool
	timers      map[*time.Timer]struct{} // owner: pending drains
	ready       bool                     // owner: initial statuses are in
	switchCount int                      // owner
}

// New checks the options and builds the Edge; it starts nothing.
func New(opts Options) (*Edge, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	e := &Edge{
		opts:       opts,
		log:        opts.Logger,
		page:       opts.MaintenancePage,
		retryAfter: []string{strconv.Itoa(max(1, int(opts.RetryAfter.Round(time.Second)/time.Second)))},
		htmlType:   []string{"text/html; charset=utf-8"},
		noStore:    []string{"no-store"},
		longGrace:  30 * time.Second,
		probeEvery: time.Second,
		ops:        make(chan func()),
		changed:    make(chan struct{}, 1),
		timers:     map[*time.Timer]struct{}{},
		dialer:     net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
	}
	e.m = newMetrics(opts.Registerer)
	if err := e.build(); err != nil {
		return nil, err
	}
	e.checker = &http.Client{
		Transport: &http.Transport{
			// A check proves that a new connection is accepted now, so
			// none is reused.
			DisableKeepAlives:      true,
			DialContext:            e.dialer.DialContext,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if len(e.http) > 0 || opts.HTTPListen != "" {
		e.srv = &http.Server{
			Handler:           e,
			ReadHeaderTimeout: opts.ReadHeaderTimeout,
			IdleTimeout:       opts.IdleTimeout,
			MaxHeaderBytes:    opts.MaxHeaderBytes,
			TLSConfig:         opts.TLS,
			ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		}
	}
	e.publish()
	return e, nil
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if len(o.MaintenancePage) == 0 {
		o.MaintenancePage = []byte(defaultPage)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RetryAfter, 5*time.Second)
	def(&o.NodePoll, time.Second)
	def(&o.NodeTimeout, time.Second)
	def(&o.NodeIdle, 6*time.Second)
	def(&o.DialTimeout, time.Second)
	def(&o.ResponseHeaderTimeout, 30*time.Second)
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.SIPFlowIdle, 3*time.Minute)
	if o.Drain < 0 {
		o.Drain = 0
	}
	if o.MarkDownAfter <= 0 {
		o.MarkDownAfter = 3
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 32 << 10
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 20000
	}
	if o.SIPMaxFlows <= 0 {
		o.SIPMaxFlows = 4096
	}
	if len(o.Routes) > 0 && o.HTTPListen == "" {
		return errors.New("edge: http listen address is required with HTTP routes")
	}
	if o.HTTPListen != "" {
		if err := checkAddr(o.HTTPListen); err != nil {
			return fmt.Errorf("edge: http listen: %w", err)
		}
	}
	if o.TLS != nil && len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil && o.TLS.GetConfigForClient == nil {
		return errors.New("edge: tls: no certificate configured")
	}
	return nil
}

// build checks the routes and wires nodes, backends, routes and targets.
func (e *Edge) build() error {
	o := &e.opts
	byNode := map[string]*nodeWatch{}
	for i, n := range o.Nodes {
		if n == nil || n.Name() == "" {
			return fmt.Errorf("edge: nodes[%d]: a node needs a name", i)
		}
		if byNode[n.Name()] != nil {
			return fmt.Errorf("edge: nodes[%d]: node %q listed twice", i, n.Name())
		}
		nw := &nodeWatch{src: n, name: n.Name(), kick: make(chan struct{}, 1)}
		byNode[n.Name()] = nw
		e.nodes = append(e.nodes, nw)
	}
	byBackend := map[string]*backend{}
	getBackend := func(where string, b Backend) (*backend, error) {
		switch {
		case b.Name == "":
			return nil, fmt.Errorf("edge: %s: name is required", where)
		case b.Node == "":
			return nil, fmt.Errorf("edge: %s (%s): node is required", where, b.Name)
		case byNode[b.Node] == nil:
			return nil, fmt.Errorf("edge: %s (%s): node %q is not among the nodes", where, b.Name, b.Node)
		}
		if err := checkAddr(b.Address); err != nil {
			return nil, fmt.Errorf("edge: %s (%s): address: %w", where, b.Name, err)
		}
		if b.Health != nil {
			c := *b.Health
			if c.Interval <= 0 {
				c.Interval = 2 * time.Second
			}
			if c.Timeout <= 0 {
				c.Timeout = min(time.Second, c.Interval)
			}
			if c.Rise <= 0 {
				c.Rise = 2
			}
			if c.Fall <= 0 {
				c.Fall = 3
			}
			if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
				return nil, fmt.Errorf("edge: %s (%s): health path %q: must start with /", where, b.Name, c.Path)
			}
			b.Health = &c
		}
		if old := byBackend[b.Name]; old != nil {
			if !sameBackend(old.cfg, b) {
				return nil, fmt.Errorf("edge: %s: backend %q is defined twice, differently", where, b.Name)
			}
			return old, nil
		}
		nb := &backend{e: e, cfg: b, node: byNode[b.Node], health: healthState{up: true}, checkNow: make(chan struct{}, 1)}
		byBackend[b.Name] = nb
		e.backends = append(e.backends, nb)
		return nb, nil
	}
	names := map[string]bool{}
	newRoute := func(where, name, kind string, main, standby Backend) (*route, error) {
		if name == "" {
			return nil, fmt.Errorf("edge: %s: name is required", where)
		}
		if names[name] {
			return nil, fmt.Errorf("edge: %s: route %q defined twice", where, name)
		}
		names[name] = true
		if main.Name != "" && main.Name == standby.Name {
			return nil, fmt.Errorf("edge: %s (%s): main and standby are the same backend %q", where, name, main.Name)
		}
		mb, err := getBackend(where+".main", main)
		if err != nil {
			return nil, err
		}
		sb, err := getBackend(where+".standby", standby)
		if err != nil {
			return nil, err
		}
		r := &route{name: name, kind: kind, unavailable: e.m.requests.WithLabelValues(name, "none", "503")}
		r.sides[0] = &target{e: e, r: r, b: mb, side: "main"}
		r.sides[1] = &target{e: e, r: r, b: sb, side: "standby"}
		r.sides[0].other, r.sides[1].other = r.sides[1], r.sides[0]
		for _, t := range r.sides {
			t.sessGauge = e.m.sessions.WithLabelValues(name, t.b.cfg.Name)
		}
		return r, nil
	}
	seen := map[string]bool{}
	for i, rc := range o.Routes {
		where := fmt.Sprintf("routes[%d]", i)
		if rc.PathPrefix == "" {
			rc.PathPrefix = "/"
		}
		if !strings.HasPrefix(rc.PathPrefix, "/") {
			return fmt.Errorf("edge: %s (%s): path prefix %q: must start with /", where, rc.Name, rc.PathPrefix)
		}
		if strings.Contains(rc.Host, ":") {
			return fmt.Errorf("edge: %s (%s): host %q: give the host without a port", where, rc.Name, rc.Host)
		}
		key := strings.ToLower(rc.Host) + " " + rc.PathPrefix
		if seen[key] {
			return fmt.Errorf("edge: %s (%s): another route has host %q and path prefix %q", where, rc.Name, rc.Host, rc.PathPrefix)
		}
		seen[key] = true
		r, err := newRoute(where, rc.Name, "http", rc.Main, rc.Standby)
		if err != nil {
			return err
		}
		r.host, r.prefix = strings.ToLower(rc.Host), rc.PathPrefix
		for _, t := range r.sides {
			e.httpTarget(t)
		}
		e.http = append(e.http, r)
		e.routes = append(e.routes, r)
	}
	sortRoutes(e.http)
	for i, sc := range o.SIP {
		where := fmt.Sprintf("sip[%d]", i)
		if err := checkAddr(sc.Listen); err != nil {
			return fmt.Errorf("edge: %s (%s): listen: %w", where, sc.Name, err)
		}
		if !sc.UDP && !sc.TCP {
			return fmt.Errorf("edge: %s (%s): set udp, tcp or both", where, sc.Name)
		}
		r, err := newRoute(where, sc.Name, "sip", sc.Main, sc.Standby)
		if err != nil {
			return err
		}
		r.listen = sc.Listen
		s := &sipRelay{e: e, r: r, cfg: sc, flows: map[flowKey]*flow{}}
		r.sip = s
		e.sips = append(e.sips, s)
		e.routes = append(e.routes, r)
	}
	return nil
}

func sameBackend(a, b Backend) bool {
	if a.Node != b.Node || a.Address != b.Address || (a.Health == nil) != (b.Health == nil) {
		return false
	}
	return a.Health == nil || *a.Health == *b.Health
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// Start opens the listeners, reads every node's status once (so the first
// requests are routed rather than refused) and starts the watchers, checks
// and relays. It returns once listening; ctx bounds the start-up only: the
// Edge runs until Close.
func (e *Edge) Start(ctx context.Context) error {
	err := errors.New("edge: already started")
	e.startOnce.Do(func() { err = e.start(ctx) })
	return err
}

func (e *Edge) start(ctx context.Context) (err error) {
	var closers []func()
	defer func() {
		if err != nil {
			for _, c := range closers {
				c()
			}
		}
	}()
	if e.srv != nil {
		ln, err := net.Listen("tcp", e.opts.HTTPListen)
		if err != nil {
			return fmt.Errorf("edge: listen http: %w", err)
		}
		e.httpLn = newLimitListener(ln, e.opts.MaxConns)
		addr := ln.Addr().String()
		e.httpAddr.Store(&addr)
		closers = append(closers, func() { e.httpLn.Close() })
	}
	for _, s := range e.sips {
		if err := s.listen(); err != nil {
			return fmt.Errorf("edge: sip %s: %w", s.cfg.Name, err)
		}
		closers = append(closers, s.closeListeners)
	}
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.started.Store(true)
	e.goTracked(e.run)

	// One status read per node before serving: routes start with a choice.
	var wg sync.WaitGroup
	for _, n := range e.nodes {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, e.opts.NodeTimeout)
			s, err := n.src.Status(rctx)
			cancel()
			e.do(func() {
				if err != nil {
					e.unreachable(n, err)
				} else {
					e.observe(n, s, "poll")
				}
			})
		})
	}
	wg.Wait()
	done := make(chan struct{})
	if e.do(func() { e.ready = true; e.recompute(); close(done) }) {
		<-done
	}
	for _, n := range e.nodes {
		e.goTracked(func() { e.stream(n) })
		e.goTracked(func() { e.poll(n) })
	}
	for _, b := range e.backends {
		e.goTracked(func() { e.check(b) })
	}
	if e.srv != nil {
		if e.opts.TLS == nil {
			e.front = newFront(e, e.httpLn)
			e.goTracked(e.front.serve)
		}
		e.goTracked(func() {
			var err error
			if e.front == nil {
				err = e.srv.ServeTLS(e.httpLn, "", "")
			} else {
				err = e.srv.Serve(e.front.handoff)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.log.Error("edge http server stopped", "err", err)
			}
		})
	}
	for _, s := range e.sips {
		s.start()
	}
	e.log.Info("edge started", "http", e.HTTPAddr(), "routes", len(e.http), "sip", len(e.sips))
	return nil
}

func (e *Edge) goTracked(fn func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		fn()
	}()
}

// HTTPAddr is the address the HTTP entry point listens on ("" before
// Start or without HTTP).
func (e *Edge) HTTPAddr() string {
	if p := e.httpAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// SIPAddr is the address a SIP route listens on ("" if unknown or not
// started); UDP and TCP share it.
func (e *Edge) SIPAddr(route string) string {
	for _, s := range e.sips {
		if s.cfg.Name == route {
			return s.addr()
		}
	}
	return ""
}

// Close stops listening, closes every client and backend connection and
// session, and waits for every goroutine of the Edge. It is safe twice and
// before Start.
func (e *Edge) Close() error {
	e.closeOnce.Do(func() {
		if !e.started.Load() {
			return
		}
		e.cancel()
		if e.front != nil {
			e.front.close()
		}
		if e.srv != nil {
			e.srv.Close()
		}
		for _, s := range e.sips {
			s.closeListeners()
		}
		for _, r := range e.routes {
			for _, t := range r.sides {
				t.sessions.shutdown()
			}
		}
		e.wg.Wait()
		// Handlers of plain requests end once their client connection is
		// closed; wait for them (bounded) so nothing outlives Close.
		for i := 0; i < 2000 && e.inflight.Load() > 0; i++ {
			time.Sleep(time.Millisecond)
		}
		for _, r := range e.routes {
			for _, t := range r.sides {
				t.closeConns()
			}
		}
		if e.front != nil {
			e.front.wait()
		}
		e.checker.CloseIdleConnections()
		e.log.Info("edge stopped")
	})
	return nil
}
