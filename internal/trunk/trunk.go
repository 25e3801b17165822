// Package trunk is the XiVO side of an XDS deployment: while a xivo node is
// Active it keeps its SIP trunk registered to every media server (MDS), so
// that the MDS send calls to the node that owns the telephony right now.
//
// A Client sends REGISTER to all MDS in parallel, answers digest challenges
// (MD5 or SHA-256, qop=auth), honours the expiry the registrar grants and its
// "423 Interval Too Brief", refreshes before the binding lapses, retries with
// backoff when a registrar fails or does not answer, and removes its own
// binding (Expires: 0) when the node is about to stop its services. It must
// work against any standard registrar (Asterisk PJSIP, Kamailio), not only
// the project's own mds kind, so it sticks to plain RFC 3261 registration.
//
// Only this package and mds import sipgo.
package trunk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Defaults applied by New to zero fields.
const (
	DefaultExpiry  = 300 * time.Second
	DefaultTimeout = 2 * time.Second
)

// ErrClosed is returned by the methods of a Client after Close.
var ErrClosed = errors.New("trunk client closed")

// Status is the state of one registration, spelt as the API shows it.
type Status string

// The states of a registration.
const (
	// Unregistered: no binding is asked for (before Register, after Unregister).
	Unregistered Status = "unregistered"
	// Registering: the first REGISTER of a cycle is under way.
	Registering Status = "registering"
	// Registered: the registrar holds our binding until State.Expires.
	Registered Status = "registered"
	// Failed: the last attempt failed (State.LastError says why); retries go on
	// in the background while the node is Active.
	Failed Status = "failed"
	// Unregistering: the REGISTER with Expires: 0 is under way.
	Unregistering Status = "unregistering"
)

// Registration is one trunk to register: the node's account on one MDS.
type Registration struct {
	// Name names the MDS, e.g. "mds-1"; unique within a Client.
	Name string
	// Registrar is the SIP URI of the registrar, e.g. "sip:127.0.0.11:5060"
	// or "sip:127.0.0.11:5060;transport=tcp". UDP is the default transport.
	Registrar string
	// Username is the trunk user; the address of record is
	// sip:Username@registrar-host.
	Username string
	// Password answers the registrar's digest challenge. It is never logged.
	Password string
	// Expiry is the expiry asked for (whole seconds); DefaultExpiry if zero.
	// The registrar may grant less, or ask for more with a 423.
	Expiry time.Duration
}

// Options configure a Client.
type Options struct {
	// Node is this xivo node's name. It is sent in the header
	// "X-Resilience-Node" and in the User-Agent "resilience/<node>", so the
	// MDS can tell which XiVO holds the binding.
	Node string
	// LocalIP is the address requests are sent from and that the Contact
	// and Via name, e.g. "127.0.0.2".
	LocalIP string
	// Port is the SIP port on LocalIP (UDP and TCP alike) that the Contact
	// names and where the client answers OPTIONS. Zero picks a free port at
	// every start; the Contact then changes across restarts, and a binding
	// left by a crash lapses only at its expiry. A fixed port keeps the
	// Contact stable, so the next start refreshes or removes that binding.
	Port int
	// Registrations lists the MDS to register to.
	Registrations []Registration
	// Timeout bounds each SIP transaction; DefaultTimeout if zero.
	Timeout time.Duration
	// Logger receives one line per registration outcome; discarded if nil.
	Logger *slog.Logger
	// OnChange, if set, is called whenever a registration's state changes.
	// It runs on the client's goroutines, possibly on several at once, and
	// must return quickly; it may call States but not Register, Unregister
	// or Close.
	OnChange func()
}

// State is a snapshot of one registration, for the status API and page.
type State struct {
	Name      string
	Registrar string
	State     Status
	// Expires is when the binding the registrar granted lapses (zero if none).
	Expires time.Time
	// Granted is the expiry the registrar granted in its last 200.
	Granted time.Duration
	// LastResponse is the status line of the last final answer, e.g.
	// "200 OK", "401 Unauthorized", "423 Interval Too Brief".
	LastResponse string
	// LastError says why the last attempt failed; empty after a success.
	LastError string
	// Since is when State last changed.
	Since time.Time
	// Contact is the contact URI this client binds.
	Contact string
}

// Client keeps a node's trunks registered to its MDS. The zero value is not
// usable: call New. Methods are safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger
	regs []*registration

	// base is cancelled by Close: every exchange derives from it, so Close
	// never waits long for a registrar that does not answer.
	base     context.Context
	baseStop context.CancelFunc

	// op serialises Register, Unregister and Close.
	op sync.Mutex

	mu       sync.Mutex // guards the fields below
	closed   bool
	started  bool               // sockets open and served
	stopLoop context.CancelFunc // non-nil while the refresh loops run
	loops    sync.WaitGroup
	firsts   []chan struct{} // closed by each loop at its first final answer

	ua      *sipgo.UserAgent
	sc      *sipgo.Client
	udp     net.PacketConn
	tcp     net.Listener
	udpPort int
	tcpPort int
	serving sync.WaitGroup
}

// New checks opts and returns a Client. It opens no socket and starts no
// goroutine: Register does.
func New(opts Options) (*Client, error) {
	if opts.Node == "" {
		return nil, errors.New("trunk: node: required")
	}
	ip := net.ParseIP(opts.LocalIP)
	if ip == nil || ip.To4() == nil {
		return nil, fmt.Errorf("trunk: local ip %q: must be an IPv4 address", opts.LocalIP)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("trunk: port %d: out of range", opts.Port)
	}
	if len(opts.Registrations) == 0 {
		return nil, errors.New("trunk: registrations: at least one is required")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, errors.New("trunk: timeout: must be positive")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts, log: log.With("component", "trunk", "node", opts.Node)}
	seen := make(map[string]bool)
	for i, reg := range opts.Registrations {
		r, err := newRegistration(c, reg)
		if err != nil {
			return nil, fmt.Errorf("trunk: registrations[%d]: %w", i, err)
		}
		if seen[reg.Name] {
			return nil, fmt.Errorf("trunk: registrations[%d].name: %q used twice", i, reg.Name)
		}
		seen[reg.Name] = true
		c.regs = append(c.regs, r)
	}
	c.base, c.baseStop = context.WithCancel(context.Background())
	return c, nil
}

// Register begins registering to every MDS in parallel and returns once each
// registration has had its first final answer (registered or failed), or
// when ctx ends. Either way the registrations are then kept in the
// background: refreshed before they expire, retried with backoff when they
// fail, until Unregister or Close. ctx bounds only the wait.
//
// The error joins the registrations that failed their first attempt; they
// are retried all the same, and the caller decides whether that matters (a
// node whose MDS is down should still become Active). Calling Register
// while registrations run only waits for their first answers.
func (c *Client) Register(ctx context.Context) error {
	c.op.Lock()
	firsts, err := c.startLoops()
	c.op.Unlock()
	if err != nil {
		return err
	}
	for _, f := range firsts {
		select {
		case <-f:
		case <-ctx.Done():
			return fmt.Errorf("register: %w", ctx.Err())
		case <-c.base.Done():
			return ErrClosed
		}
	}
	var errs []error
	for _, st := range c.States() {
		if st.State == Failed {
			errs = append(errs, fmt.Errorf("register to %s: %s", st.Name, st.LastError))
		}
	}
	return errors.Join(errs...)
}

// startLoops opens the sockets if needed and starts one refresh loop per
// registration unless they already run. It returns the channels that close
// at each loop's first final answer.
func (c *Client) startLoops() ([]chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if err := c.startLocked(); err != nil {
		return nil, err
	}
	if c.stopLoop != nil {
		return c.firsts, nil
	}
	ctx, stop := context.WithCancel(c.base)
	c.stopLoop = stop
	c.firsts = make([]chan struct{}, len(c.regs))
	for i, r := range c.regs {
		first := make(chan struct{})
		c.firsts[i] = first
		c.loops.Go(func() { r.run(ctx, first) })
	}
	c.log.Info("registering trunks", "mds", len(c.regs))
	return c.firsts, nil
}

// stopLoops cancels the refresh loops and waits for them to return. They
// return promptly: cancelling aborts the transaction in flight.
func (c *Client) stopLoops() {
	c.mu.Lock()
	stop := c.stopLoop
	c.stopLoop = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	c.loops.Wait()
}

// Unregister stops the refreshes and sends a REGISTER with Expires: 0 for
// this client's contact to every MDS in parallel (answering challenges). It
// returns when every MDS has answered, or when ctx ends. Only this node's
// contact is removed, never the peer's (no "Contact: *"), since both XiVO
// nodes may bind the same trunk during a takeover.
//
// It is sent even to an MDS that never granted a binding in this run: with
// a fixed Options.Port one may remain there from before a crash. The error
// joins the MDS that did not confirm; their binding lapses at its expiry.
func (c *Client) Unregister(ctx context.Context) error {
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	err := c.startLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.stopLoops()

	// Close must be able to cut a slow unregister short.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.base, cancel)()

	errs := make([]error, len(c.regs))
	var wg sync.WaitGroup
	for i, r := range c.regs {
		wg.Go(func() { errs[i] = r.unregister(ctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unregister: %w", err)
	}
	return errors.Join(errs...)
}

// States returns a snapshot of every registration, in configuration order.
func (c *Client) States() []State {
	out := make([]State, 0, len(c.regs))
	for _, r := range c.regs {
		out = append(out, r.snapshot())
	}
	return out
}

// Close stops the refreshes and every goroutine of the client and closes its
// sockets. It sends nothing: call Unregister first to remove the bindings.
// It is safe to call more than once.
func (c *Client) Close() error {
	c.baseStop()
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stopLoops()

	var errs []error
	if c.udp != nil {
		errs = append(errs, c.udp.Close())
	}
	if c.tcp != nil {
		errs = append(errs, c.tcp.Close())
	}
	if c.ua != nil {
		errs = append(errs, c.ua.Close())
	}
	c.serving.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("close trunk client: %w", err)
		}
	}
	return nil
}

// startLocked opens the SIP user agent and the sockets the registrations
// need, once. c.mu must be held.
//
// The client listens on LocalIP (an ephemeral port) rather than sending from
// a fresh socket per request, so that the Contact it binds is an address
// where it answers: registrars that qualify their contacts with OPTIONS
// (Asterisk's qualify, Kamailio's keepalive) get a 200 and keep the binding.
func (c *Client) startLocked() error {
	if c.started {
		return nil
	}
	var needUDP, needTCP bool
	for _, r := range c.regs {
		if r.transport == "TCP" {
			needTCP = true
		} else {
			needUDP = true
		}
	}

	// sipgo logs retransmissions and the like at Info; only its warnings
	// are worth the operator's attention.
	sipLog := slog.New(minLevel{c.log.Handler(), slog.LevelWarn}).With("component", "sipgo")
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("resilience/"+c.opts.Node),
		sipgo.WithUserAgentHostname(c.opts.LocalIP),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			// Late answers to a transaction we gave up are expected;
			// sipgo would log each at Info.
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {}),
			// A TCP registrar that closes the connection fails the
			// transaction at once instead of at its timeout.
			sip.WithTransactionLayerTerminateOnConnClose(),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
	)
	if err != nil {
		return fmt.Errorf("trunk: sip user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		ua.Close()
		return fmt.Errorf("trunk: sip server: %w", err)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "OPTIONS"))
		_ = tx.Respond(res)
	})
	sc, err := sipgo.NewClient(ua, sipgo.WithClientLogger(sipLog), sipgo.WithClientHostname(c.opts.LocalIP))
	if err != nil {
		ua.Close()
		return fmt.Errorf("trunk: sip client: %w", err)
	}

	var udp net.PacketConn
	var tcp net.Listener
	closeAll := func() {
		if udp != nil {
			udp.Close()
		}
		if tcp != nil {
			tcp.Close()
		}
		ua.Close()
	}
	if needUDP {
		addr := net.JoinHostPort(c.opts.LocalIP, strconv.Itoa(c.opts.Port))
		udp, err = net.ListenPacket("udp4", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("trunk: listen udp on %s: %w", addr, err)
		}
		c.udpPort = udp.LocalAddr().(*net.UDPAddr).Port
	}
	if needTCP {
		port := c.opts.Port
		if port == 0 {
			// The same number for both transports reads better in
			// registrar dumps; any free port will do when it is taken.
			port = c.udpPort
		}
		tcp, err = net.Listen("tcp4", net.JoinHostPort(c.opts.LocalIP, strconv.Itoa(port)))
		if err != nil && c.opts.Port == 0 && port != 0 {
			tcp, err = net.Listen("tcp4", net.JoinHostPort(c.opts.LocalIP, "0"))
		}
		if err != nil {
			closeAll()
			return fmt.Errorf("trunk: listen tcp on %s: %w", c.opts.LocalIP, err)
		}
		c.tcpPort = tcp.Addr().(*net.TCPAddr).Port
	}

	tp := ua.TransportLayer()
	if udp != nil {
		c.serving.Go(func() { _ = tp.ServeUDP(udp) })
		// Requests name this socket as their local address; until
		// ServeUDP has put it in sipgo's pool, sipgo would try to bind the
		// port a second time and fail. It does so at once, before reading.
		addr := udp.LocalAddr().String()
		deadline := time.Now().Add(time.Second)
		for {
			if conn, err := tp.GetConnection("udp", addr); err == nil && conn != nil {
				_, _ = conn.TryClose() // GetConnection took a reference
				break
			}
			if time.Now().After(deadline) {
				closeAll()
				c.serving.Wait()
				return fmt.Errorf("trunk: udp socket %s not served", addr)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if tcp != nil {
		c.serving.Go(func() { _ = tp.ServeTCP(tcp) })
	}
	c.ua, c.sc, c.udp, c.tcp = ua, sc, udp, tcp
	for _, r := range c.regs {
		r.bindLocal()
	}
	c.started = true
	return nil
}

// changed tells the owner that a registration's state changed.
func (c *Client) changed() {
	if c.opts.OnChange != nil {
		c.opts.OnChange()
	}
}

// minLevel drops records below a level before the wrapped handler sees them.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// statusLine renders a response's code and reason, e.g. "423 Interval Too Brief".
func statusLine(res *sip.Response) string {
	reason := strings.TrimSpace(res.Reason)
	if reason == "" {
		return fmt.Sprint(res.StatusCode)
	}
	return fmt.Sprintf("%d %s", res.StatusCode, reason)
}
