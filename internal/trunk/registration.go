package trunk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Retry and refresh tuning. Variables, not constants, so tests can shorten
// them.
var (
	// retryMin and retryMax bound the backoff between failed attempts: it
	// starts at retryMin and doubles up to retryMax, with ±20% jitter so
	// that nodes restarted together do not hammer an MDS in step.
	retryMin = time.Second
	retryMax = 30 * time.Second
	// refreshMargin is how long before expiry a binding is refreshed, at
	// most; short bindings are refreshed at half their life. The margin
	// leaves room for a few retries before the binding lapses.
	refreshMargin = 30 * time.Second
)

// Per-cycle limits, so a registrar that keeps challenging or raising its
// minimum cannot hold a loop in a tight circle.
const (
	maxAuthTries     = 3 // a 401 with stale=true may follow a good answer
	maxIntervalTries = 3
)

// registration is one trunk to one MDS. Its refresh loop runs on one
// goroutine; Unregister runs after that loop has stopped, so the SIP fields
// (cseq, expiry) are only ever touched by one goroutine at a time. mu guards
// the State the rest of the program reads.
type registration struct {
	c         *Client
	cfg       Registration
	recipient sip.Uri // Request-URI: the registrar
	aor       sip.Uri // To and From: sip:user@registrar-host
	transport string  // "UDP" or "TCP"
	callID    string  // one per client lifetime, as RFC 3261 10.2 asks
	fromTag   string

	// Set once by bindLocal when the sockets are open.
	contact sip.Uri
	laddr   sip.Addr
	viaPort int

	cseq   uint32
	expiry time.Duration // asked for; raised by a 423

	mu    sync.Mutex
	state State
}

func newRegistration(c *Client, cfg Registration) (*registration, error) {
	if cfg.Name == "" {
		return nil, errors.New("name: required")
	}
	if cfg.Username == "" {
		return nil, errors.New("username: required")
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = DefaultExpiry
	}
	if cfg.Expiry < time.Second || cfg.Expiry%time.Second != 0 {
		return nil, fmt.Errorf("expiry %s: must be a whole number of seconds, at least 1s", cfg.Expiry)
	}
	var u sip.Uri
	if err := sip.ParseUri(cfg.Registrar, &u); err != nil {
		return nil, fmt.Errorf("registrar %q: %w", cfg.Registrar, err)
	}
	if u.Scheme != "sip" {
		return nil, fmt.Errorf("registrar %q: only sip: URIs are supported", cfg.Registrar)
	}
	if u.Host == "" || u.User != "" {
		return nil, fmt.Errorf("registrar %q: want sip:host[:port][;transport=udp|tcp]", cfg.Registrar)
	}
	transport := "UDP"
	if t, ok := u.UriParams.Get("transport"); ok {
		transport = strings.ToUpper(t)
	}
	if transport != "UDP" && transport != "TCP" {
		return nil, fmt.Errorf("registrar %q: transport %s: want udp or tcp", cfg.Registrar, transport)
	}
	r := &registration{
		c:         c,
		cfg:       cfg,
		recipient: u,
		aor:       sip.Uri{Scheme: "sip", User: cfg.Username, Host: u.Host},
		transport: transport,
		callID:    randomHex(16) + "@" + c.opts.LocalIP,
		fromTag:   randomHex(8),
		expiry:    cfg.Expiry,
	}
	r.state = State{Name: cfg.Name, Registrar: cfg.Registrar, State: Unregistered, Since: time.Now()}
	return r, nil
}

// bindLocal fixes the local address and Contact once the sockets are open.
func (r *registration) bindLocal() {
	ip := net.ParseIP(r.c.opts.LocalIP)
	r.contact = sip.Uri{Scheme: "sip", User: r.cfg.Username, Host: r.c.opts.LocalIP}
	if r.transport == "TCP" {
		r.viaPort = r.c.tcpPort
		r.contact.Port = r.c.tcpPort
		r.contact.UriParams = sip.NewParams()
		r.contact.UriParams.Add("transport", "tcp")
		// Port 0: sipgo reuses the open connection to this registrar or
		// dials a new one from LocalIP.
		r.laddr = sip.Addr{IP: ip}
	} else {
		r.viaPort = r.c.udpPort
		r.contact.Port = r.c.udpPort
		// The listening socket itself, so answers come back to it.
		r.laddr = sip.Addr{IP: ip, Port: r.c.udpPort}
	}
	r.mu.Lock()
	r.state.Contact = r.contact.String()
	r.mu.Unlock()
}

// run keeps the binding alive until ctx ends: register, wait until the
// refresh time, register again; after a failure wait a growing backoff.
// first is closed at the first final answer (or when run returns).
func (r *registration) run(ctx context.Context, first chan struct{}) {
	var once sync.Once
	signal := func() { once.Do(func() { close(first) }) }
	defer signal()

	backoff := retryMin
	// Registering shows only for the first attempt: later ones keep
	// showing the last outcome (registered, or failed with its error)
	// rather than flapping at every retry.
	r.update(func(s *State) { s.State = Registering })
	for {
		sent := time.Now()
		out := r.exchange(ctx, r.expiry)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if out.err != nil {
			wait = jitter(backoff)
			backoff = min(backoff*2, retryMax)
			r.c.log.Warn("trunk registration failed", "mds", r.cfg.Name, "registrar", r.cfg.Registrar,
				"response", out.response, "error", out.err, "retry_in", wait.Round(time.Millisecond))
			r.update(func(s *State) {
				s.State = Failed
				s.LastResponse = out.response
				s.LastError = out.err.Error()
			})
		} else {
			backoff = retryMin
			wait = refreshIn(out.granted)
			// A routine refresh is worth a debug line only; a new binding,
			// a recovery or a changed grant is worth telling the operator.
			level := slog.LevelInfo
			if prev := r.snapshot(); prev.State == Registered && prev.Granted == out.granted {
				level = slog.LevelDebug
			}
			r.c.log.Log(ctx, level, "trunk registered", "mds", r.cfg.Name, "registrar", r.cfg.Registrar,
				"contact", r.contact.String(), "granted", out.granted, "refresh_in", wait.Round(time.Millisecond))
			r.update(func(s *State) {
				s.State = Registered
				s.Granted = out.granted
				s.Expires = sent.Add(out.granted)
				s.LastResponse = out.response
				s.LastError = ""
			})
		}
		signal()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// unregister removes this client's binding: a REGISTER for its contact with
// Expires: 0, authenticated like any other.
func (r *registration) unregister(ctx context.Context) error {
	r.update(func(s *State) { s.State = Unregistering })
	out := r.exchange(ctx, 0)
	if out.err != nil {
		r.c.log.Warn("trunk unregister failed", "mds", r.cfg.Name, "registrar", r.cfg.Registrar,
			"response", out.response, "error", out.err)
		r.update(func(s *State) {
			s.State = Failed
			s.LastResponse = out.response
			s.LastError = "unregister: " + out.err.Error()
		})
		return fmt.Errorf("unregister from %s: %w", r.cfg.Name, out.err)
	}
	r.c.log.Info("trunk unregistered", "mds", r.cfg.Name, "registrar", r.cfg.Registrar)
	r.update(func(s *State) {
		s.State = Unregistered
		s.Expires = time.Time{}
		s.Granted = 0
		s.LastResponse = out.response
		s.LastError = ""
	})
	return nil
}

// outcome is the end of one exchange: a 2xx (err nil) or why not.
type outcome struct {
	granted  time.Duration
	response string // last final status line, "" if none came
	err      error
}

// exchange runs one registration cycle: REGISTER, then as many follow-ups
// as the registrar asks for (a digest answer after 401/407, a longer expiry
// after 423), each a new transaction with the next CSeq, the same Call-ID
// and From tag.
func (r *registration) exchange(ctx context.Context, expiry time.Duration) outcome {
	var (
		auth          *challenge
		authTries     int
		intervalTries int
		last          string
	)
	for {
		var authHeader sip.Header
		if auth != nil {
			name, value, err := auth.answer("REGISTER", r.recipient.String(), r.cfg.Username, r.cfg.Password)
			if err != nil {
				return outcome{response: last, err: fmt.Errorf("answer %s challenge: %w", last, err)}
			}
			authHeader = sip.NewHeader(name, value)
		}
		req := r.newRequest(expiry, authHeader)
		tctx, cancel := context.WithTimeout(ctx, r.c.opts.Timeout)
		res, err := r.c.sc.Do(tctx, req)
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return outcome{response: last, err: ctx.Err()}
			case errors.Is(err, context.DeadlineExceeded):
				err = fmt.Errorf("no answer from %s within %s", r.cfg.Registrar, r.c.opts.Timeout)
			default:
				err = fmt.Errorf("send to %s: %w", r.cfg.Registrar, err)
			}
			return outcome{response: last, err: err}
		}
		last = statusLine(res)
		r.c.log.Debug("trunk register answer", "mds", r.cfg.Name, "cseq", req.CSeq().SeqNo,
			"expires", int(expiry/time.Second), "response", last)

		switch code := res.StatusCode; {
		case code >= 200 && code < 300:
			if expiry == 0 {
				return outcome{response: last}
			}
			granted := r.granted(res, expiry)
			if granted <= 0 {
				return outcome{response: last, err: errors.New("registrar kept no binding (granted 0s)")}
			}
			return outcome{granted: granted, response: last}

		case code == sip.StatusUnauthorized || code == sip.StatusProxyAuthRequired:
			next, err := parseChallenge(res)
			if err != nil {
				return outcome{response: last, err: err}
			}
			authTries++
			// A second challenge after an answer means wrong credentials,
			// unless the registrar says only the nonce went stale.
			if (auth != nil && !next.stale) || authTries > maxAuthTries {
				return outcome{response: last, err: fmt.Errorf("%s: credentials of %q refused", last, r.cfg.Username)}
			}
			auth = next

		case code == 423:
			minExp, err := minExpires(res)
			intervalTries++
			if err != nil || minExp <= expiry || intervalTries > maxIntervalTries || expiry == 0 {
				if err == nil {
					err = fmt.Errorf("Min-Expires %s does not raise the asked %s", minExp, expiry)
				}
				return outcome{response: last, err: fmt.Errorf("%s: %w", last, err)}
			}
			r.c.log.Info("trunk registrar asks a longer expiry", "mds", r.cfg.Name,
				"asked", expiry, "min_expires", minExp)
			expiry = minExp
			// Keep asking for it on refreshes: the registrar's minimum
			// will not drop between two of them.
			r.expiry = minExp

		default:
			return outcome{response: last, err: errors.New(last)}
		}
	}
}

// newRequest builds a complete REGISTER, so sipgo adds nothing of its own:
// our Via (sent-by on the listening socket, rport), From tag, Call-ID and
// CSeq, where sipgo would pick fresh ones. auth, if not nil, is the
// Authorization or Proxy-Authorization header answering a challenge.
func (r *registration) newRequest(expiry time.Duration, auth sip.Header) *sip.Request {
	r.cseq++
	req := sip.NewRequest(sip.REGISTER, r.recipient)
	req.SetTransport(r.transport)
	req.Laddr = r.laddr

	via := &sip.ViaHeader{
		ProtocolName:    "SIP",
		ProtocolVersion: "2.0",
		Transport:       r.transport,
		Host:            r.c.opts.LocalIP,
		Port:            r.viaPort,
		Params:          sip.NewParams(),
	}
	via.Params.Add("branch", sip.GenerateBranch())
	via.Params.Add("rport", "")
	req.AppendHeader(via)
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	from := &sip.FromHeader{Address: r.aor, Params: sip.NewParams()}
	from.Params.Add("tag", r.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: r.aor})
	callID := sip.CallIDHeader(r.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: r.contact})
	exp := sip.ExpiresHeader(uint32(expiry / time.Second))
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("User-Agent", "resilience/"+r.c.opts.Node))
	req.AppendHeader(sip.NewHeader("X-Resilience-Node", r.c.opts.Node))
	if auth != nil {
		req.AppendHeader(auth)
	}
	req.SetBody(nil) // Content-Length: 0
	return req
}

// granted reads the expiry the registrar granted our contact: the expires
// parameter of our Contact in the 200 (which lists every binding of the
// AOR, the peer node's too), else the Expires header, else what we asked.
func (r *registration) granted(res *sip.Response, asked time.Duration) time.Duration {
	for _, h := range res.GetHeaders("Contact") {
		for _, ct := range contacts(h) {
			if !sameContact(ct.Address, r.contact) {
				continue
			}
			if v, ok := ct.Params.Get("expires"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					return time.Duration(n) * time.Second
				}
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return asked
}

// contacts returns the contacts one Contact header holds; sipgo parses a
// comma-separated list into several headers, but a header it left raw may
// still hold several.
func contacts(h sip.Header) []sip.ContactHeader {
	if ct, ok := h.(*sip.ContactHeader); ok {
		return []sip.ContactHeader{*ct}
	}
	var out []sip.ContactHeader
	for _, part := range splitContacts(h.Value()) {
		var ct sip.ContactHeader
		if _, err := sip.ParseAddressValue(part, &ct.Address, &ct.Params); err == nil {
			out = append(out, ct)
		}
	}
	return out
}

// splitContacts splits a Contact value at the commas outside <> and quotes.
func splitContacts(v string) []string {
	var out []string
	var inAngle, inQuote bool
	start := 0
	for i, ch := range v {
		switch {
		case ch == '"':
			inQuote = !inQuote
		case ch == '<' && !inQuote:
			inAngle = true
		case ch == '>' && !inQuote:
			inAngle = false
		case ch == ',' && !inAngle && !inQuote:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

// sameContact compares the parts of two contact URIs that identify a
// binding (RFC 3261 10.3 compares URIs; registrars echo ours back, at most
// reordering parameters, so user, host, port and transport suffice).
func sameContact(a, b sip.Uri) bool {
	port := func(u sip.Uri) int {
		if u.Port == 0 {
			return 5060
		}
		return u.Port
	}
	tr := func(u sip.Uri) string {
		t, _ := u.UriParams.Get("transport")
		if t == "" {
			return "udp"
		}
		return strings.ToLower(t)
	}
	return a.User == b.User && strings.EqualFold(a.Host, b.Host) && port(a) == port(b) && tr(a) == tr(b)
}

// minExpires reads the Min-Expires header of a 423.
func minExpires(res *sip.Response) (time.Duration, error) {
	h := res.GetHeader("Min-Expires")
	if h == nil {
		return 0, errors.New("no Min-Expires header")
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad Min-Expires %q", h.Value())
	}
	return time.Duration(n) * time.Second, nil
}

// update changes the state under the lock, stamps Since when the status
// moves, and tells the owner outside the lock.
func (r *registration) update(f func(*State)) {
	r.mu.Lock()
	before := r.state
	f(&r.state)
	if r.state.State != before.State {
		r.state.Since = time.Now()
	}
	changed := r.state != before
	if changed && r.state.State != before.State {
		r.c.log.Debug("trunk registration state", "mds", r.cfg.Name,
			slog.String("from", string(before.State)), slog.String("to", string(r.state.State)))
	}
	r.mu.Unlock()
	if changed {
		r.c.changed()
	}
}

func (r *registration) snapshot() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// refreshIn is when to refresh a binding granted for d: refreshMargin before
// it lapses, or at half its life when it is short.
func refreshIn(d time.Duration) time.Duration {
	return d - min(d/2, refreshMargin)
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
