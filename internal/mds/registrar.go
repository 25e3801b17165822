// Package mds is the registrar of a media server (MDS) for the SIP trunk
// from the XiVO.
//
// In an XDS deployment the Active XiVO registers its trunk to every MDS, so
// which contact an MDS holds says which XiVO node carries the telephony.
// This package is that registrar: a small RFC 3261 section 10.3 registrar
// with digest authentication that remembers who is bound, tells its node
// when that changes, and raises an alarm when two XiVO nodes are bound at
// once (a takeover in progress, or a split brain).
//
// It faces the network, so every input is bounded: the size of a message,
// the number of its headers, the length of every stored field, the number of
// bindings per address of record and in total, and the number of TCP
// connections. Parsing is done by sipgo's parser; sockets, framing and the
// registrar logic are ours, so that the whole request path (bytes in, bytes
// out) is one function, [Registrar.handle], that the fuzzer calls without
// sockets.
package mds

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Defaults for Options left zero.
const (
	DefaultMinExpires     = 60 * time.Second
	DefaultMaxExpires     = 3600 * time.Second
	DefaultDefaultExpires = 300 * time.Second

	// DefaultMaxBindingsPerAOR leaves room for the two XiVO nodes of a
	// pair during a takeover, plus a few stale contacts of a restarted
	// client (new Call-ID, new port) before they expire.
	DefaultMaxBindingsPerAOR = 10
	// DefaultMaxBindings bounds the memory all bindings can take (about
	// 1.5 KiB each at the field limits below).
	DefaultMaxBindings = 1000
)

// Options configure a Registrar.
type Options struct {
	// Name is this MDS, e.g. "mds-1". It names the Server header and is
	// the default realm.
	Name string
	// UDP and TCP are listen addresses such as "127.0.0.11:5060"; empty
	// means no listener of that kind. Port 0 picks a free port (see
	// UDPAddr and TCPAddr).
	UDP string
	TCP string
	// Realm is the digest realm; Name if empty.
	Realm string
	// Users maps a trunk username to its password. A user may only
	// register the address of record whose user part is its username.
	Users map[string]string
	// DigestAlgorithms are offered in a 401, one WWW-Authenticate each,
	// most preferred first: "SHA-256", "MD5" (the default, both, SHA-256
	// first as RFC 8760 asks). Some clients only read the first challenge
	// and know only MD5 (SIPp 3.6 for one); list "MD5" alone for them.
	DigestAlgorithms []string
	// MinExpires, MaxExpires and DefaultExpires bound the expiry a client
	// asks for (zero: 60s, 3600s, 300s). They are whole seconds, as SIP
	// expresses them.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// MaxBindingsPerAOR and MaxBindings cap the bindings held (zero:
	// DefaultMaxBindingsPerAOR, DefaultMaxBindings).
	MaxBindingsPerAOR, MaxBindings int
	// Logger receives binding changes (Info) and rejected requests
	// (Debug, or rate-limited Warn for authentication failures).
	Logger *slog.Logger
	// OnChange is called whenever the bindings change (bound, refreshed
	// expiry, removed, expired). Calls are made one at a time from a
	// goroutine of the Registrar and coalesced: a slow OnChange delays
	// later notifications, never SIP traffic. Read Bindings and Alarm in
	// it to learn what changed.
	OnChange func()
}

// Binding is one contact bound to an address of record.
type Binding struct {
	// AOR is the canonical address of record, "sip:user@host".
	AOR string
	// Contact is the bound contact URI.
	Contact string
	// Node is the XiVO node named by the X-Resilience-Node header of the
	// REGISTER that made or last refreshed the binding; "" without one.
	Node string
	// UserAgent is the client's User-Agent header.
	UserAgent string
	// Source is the ip:port the REGISTER came from.
	Source string
	// Transport is "UDP" or "TCP".
	Transport string
	// Since is when the contact was first bound; a refresh keeps it.
	Since time.Time
	// Expires is when the binding lapses unless refreshed.
	Expires time.Time
	// CallID and CSeq are those of the last REGISTER that changed the
	// binding; RFC 3261 orders updates by them.
	CallID string
	CSeq   uint32
}

// Registrar is the SIP registrar of an MDS. Create it with New, then
// Start it; Close releases everything.
type Registrar struct {
	name, realm      string
	udpAddr, tcpAddr string
	users            map[string]string
	minExp, maxExp   time.Duration
	defExp           time.Duration
	log              *slog.Logger
	onChange         func()
	parser           *sip.Parser
	auth             *digestAuth
	warn             *rateLimiter

	// Test knobs, set before Start: the clock and the TCP idle limits.
	now           func() time.Time
	tcpIdle       time.Duration // before a connection authenticated
	tcpAuthedIdle time.Duration // after

	store *store

	kick    chan struct{} // store changed: re-arm the expiry timer
	changed chan struct{} // something to tell OnChange

	mu      sync.Mutex
	started bool
	closed  bool
	done    chan struct{}
	udp     net.PacketConn
	tcp     net.Listener
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// New checks opts and returns a Registrar that is not listening yet.
func New(opts Options) (*Registrar, error) {
	if opts.Name == "" {
		return nil, errors.New("mds: name is required")
	}
	if len(opts.Users) == 0 {
		return nil, errors.New("mds: at least one trunk user is required")
	}
	users := make(map[string]string, len(opts.Users))
	for u, p := range opts.Users {
		if u == "" || len(u) > maxFieldLen || strings.ContainsAny(u, "\"\\\r\n") {
			return nil, fmt.Errorf("mds: user %q: not a usable digest username", u)
		}
		if p == "" {
			return nil, fmt.Errorf("mds: user %q: password is empty", u)
		}
		users[u] = p
	}
	realm := opts.Realm
	if realm == "" {
		realm = opts.Name
	}
	if strings.ContainsAny(realm, "\"\\\r\n") {
		return nil, fmt.Errorf("mds: realm %q: must not contain quotes, backslashes or line breaks", realm)
	}
	minExp := orDefault(opts.MinExpires, DefaultMinExpires)
	maxExp := orDefault(opts.MaxExpires, DefaultMaxExpires)
	defExp := orDefault(opts.DefaultExpires, DefaultDefaultExpires)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"min expires", minExp}, {"max expires", maxExp}, {"default expires", defExp}} {
		if d.v < time.Second || d.v%time.Second != 0 {
			return nil, fmt.Errorf("mds: %s %v: must be a positive whole number of seconds", d.name, d.v)
		}
	}
	if minExp > defExp || defExp > maxExp {
		return nil, fmt.Errorf("mds: expires must satisfy min (%v) <= default (%v) <= max (%v)", minExp, defExp, maxExp)
	}
	perAOR := orDefault(opts.MaxBindingsPerAOR, DefaultMaxBindingsPerAOR)
	total := orDefault(opts.MaxBindings, DefaultMaxBindings)
	if perAOR < 1 || total < perAOR {
		return nil, fmt.Errorf("mds: bindings limits: need 1 <= per AOR (%d) <= total (%d)", perAOR, total)
	}
	algs := opts.DigestAlgorithms
	if len(algs) == 0 {
		algs = []string{"SHA-256", "MD5"}
	}
	for i, a := range algs {
		if a != "SHA-256" && a != "MD5" {
			return nil, fmt.Errorf("mds: digest algorithm %q: must be SHA-256 or MD5", a)
		}
		if slices.Contains(algs[:i], a) {
			return nil, fmt.Errorf("mds: digest algorithm %q listed twice", a)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("mds: nonce key: %w", err)
	}
	r := &Registrar{
		name:          opts.Name,
		realm:         realm,
		udpAddr:       opts.UDP,
		tcpAddr:       opts.TCP,
		users:         users,
		minExp:        minExp,
		maxExp:        maxExp,
		defExp:        defExp,
		log:           log.With("mds", opts.Name),
		onChange:      opts.OnChange,
		parser:        newParser(),
		auth:          newDigestAuth(realm, key[:], slices.Clone(algs)),
		warn:          newRateLimiter(time.Second),
		now:           time.Now,
		tcpIdle:       defaultTCPIdle,
		tcpAuthedIdle: maxExp + time.Minute,
		store:         newStore(perAOR, total),
		kick:          make(chan struct{}, 1),
		changed:       make(chan struct{}, 1),
		done:          make(chan struct{}),
		conns:         make(map[net.Conn]struct{}),
	}
	return r, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Start opens the listeners and returns once they accept traffic, or with
// an error if one cannot be opened (port taken, bad address). The
// registrar runs until Close or until ctx is done.
func (r *Registrar) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return errors.New("mds: start: registrar is closed")
	case r.started:
		return errors.New("mds: start: already started")
	case r.udpAddr == "" && r.tcpAddr == "":
		return errors.New("mds: start: no UDP or TCP listen address")
	}
	var udp net.PacketConn
	var tcp net.Listener
	var err error
	if r.udpAddr != "" {
		if udp, err = net.ListenPacket("udp", r.udpAddr); err != nil {
			return fmt.Errorf("mds: listen udp %s: %w", r.udpAddr, err)
		}
	}
	if r.tcpAddr != "" {
		if tcp, err = net.Listen("tcp", r.tcpAddr); err != nil {
			if udp != nil {
				_ = udp.Close()
			}
			return fmt.Errorf("mds: listen tcp %s: %w", r.tcpAddr, err)
		}
	}
	r.started = true
	r.udp, r.tcp = udp, tcp
	if udp != nil {
		r.log.Info("registrar listening", "transport", "UDP", "addr", udp.LocalAddr().String())
		r.wg.Go(func() { r.serveUDP(udp) })
	}
	if tcp != nil {
		r.log.Info("registrar listening", "transport", "TCP", "addr", tcp.Addr().String())
		r.wg.Go(func() { r.serveTCP(tcp) })
	}
	r.wg.Go(r.expireLoop)
	r.wg.Go(r.notifyLoop)
	r.wg.Go(func() {
		select {
		case <-ctx.Done():
			r.shutdown()
		case <-r.done:
		}
	})
	return nil
}

// UDPAddr is the address the UDP listener is bound to, "" if none.
func (r *Registrar) UDPAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.udp == nil {
		return ""
	}
	return r.udp.LocalAddr().String()
}

// TCPAddr is the address the TCP listener is bound to, "" if none.
func (r *Registrar) TCPAddr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tcp == nil {
		return ""
	}
	return r.tcp.Addr().String()
}

// Close stops the listeners, closes TCP connections and timers, and waits
// for every goroutine of the Registrar to end. It is safe to call twice,
// and before Start.
func (r *Registrar) Close() error {
	r.shutdown()
	r.wg.Wait()
	return nil
}

// shutdown closes everything without waiting, so that the ctx watcher,
// itself one of the waited goroutines, can use it.
func (r *Registrar) shutdown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	close(r.done)
	if r.udp != nil {
		_ = r.udp.Close()
	}
	if r.tcp != nil {
		_ = r.tcp.Close()
	}
	for c := range r.conns {
		_ = c.Close()
	}
}

// Bindings returns the current, unexpired bindings, sorted by AOR, then
// by when they were bound.
func (r *Registrar) Bindings() []Binding {
	return r.store.list(r.now())
}

// Alarm is non-empty when contacts from two (or more) different XiVO nodes
// are bound at once, over all addresses of record: during a make-before-
// break takeover for a moment, otherwise a sign of split brain. Bindings
// without an X-Resilience-Node header are not counted.
func (r *Registrar) Alarm() string {
	seen := map[string]bool{}
	var nodes []string
	for _, b := range r.Bindings() {
		if b.Node != "" && !seen[b.Node] {
			seen[b.Node] = true
			nodes = append(nodes, b.Node)
		}
	}
	sort.Strings(nodes)
	switch len(nodes) {
	case 0, 1:
		return ""
	case 2:
		return "two XiVO nodes bound at once: " + nodes[0] + " and " + nodes[1]
	default:
		return fmt.Sprintf("%d XiVO nodes bound at once: %s and %s",
			len(nodes), strings.Join(nodes[:len(nodes)-1], ", "), nodes[len(nodes)-1])
	}
}

// changedBindings records that the bindings changed: the expiry timer is
// re-armed and OnChange will be told. Neither blocks.
func (r *Registrar) changedBindings() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// expireLoop removes bindings when they lapse. One timer is armed for the
// earliest expiry, so an idle registrar costs nothing.
func (r *Registrar) expireLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		if next, ok := r.store.nextExpiry(); ok {
			t.Reset(max(time.Until(next), 0))
		} else {
			t.Stop()
		}
		select {
		case <-r.done:
			return
		case <-r.kick:
		case <-t.C:
			if removed := r.store.expire(r.now()); len(removed) > 0 {
				for _, b := range removed {
					r.log.Info("binding expired", "aor", b.AOR, "contact", b.Contact, "node", b.Node)
				}
				r.changedBindings()
			}
		}
	}
}

// notifyLoop calls OnChange, one call at a time, coalescing bursts.
func (r *Registrar) notifyLoop() {
	for {
		select {
		case <-r.done:
			return
		case <-r.changed:
			if r.onChange != nil {
				r.onChange()
			}
		}
	}
}

// rateLimiter lets one event through per interval and counts the others,
// so that a flood of bad requests cannot flood the log.
type rateLimiter struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

func newRateLimiter(every time.Duration) *rateLimiter { return &rateLimiter{every: every} }

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *rateLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
