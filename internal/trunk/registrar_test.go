package trunk

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// testRegistrar is a small registrar written for these tests on sipgo's
// server. Unlike the real ones it can misbehave on demand: drop requests,
// answer 423, grant less than asked, challenge with a chosen algorithm.
// It checks digest answers with its own hashing (not icholy/digest), so a
// bug shared by the client's library would still show.
type testRegistrar struct {
	t         *testing.T
	addr      string // host:port
	transport string // "udp" or "tcp"
	ua        *sipgo.UserAgent

	mu sync.Mutex
	// Behaviour, set through configure.
	user, password, realm string
	algorithm             string // "" means no authentication
	proxyAuth             bool   // challenge with 407 Proxy-Authenticate
	minExpires            int    // >0: 423 below it
	maxExpires            int    // >0: grant at most this
	expiresHeader         bool   // grant in an Expires header too, not only the contact param
	drop                  int    // transactions (by branch) to leave unanswered
	peer                  string // a binding of another node listed first in every 200
	// Observations.
	dropped  map[string]bool
	nonces   map[string]bool
	reqs     []seenRequest
	bindings map[string]time.Time // contact URI -> expiry
}

// seenRequest is what the registrar saw of one REGISTER and how it answered.
type seenRequest struct {
	at         time.Time
	callID     string
	cseq       uint32
	branch     string
	expires    int // -1 when absent
	contact    string
	userAgent  string
	node       string
	transport  string
	authorized bool
	authParams *digest.Credentials
	answer     int // 0 when dropped
}

// startRegistrar listens on ip:0 with transport and serves until the test
// ends.
func startRegistrar(t *testing.T, ip, transport string) *testRegistrar {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("test-registrar"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(testSIPLog(t))),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(testSIPLog(t))))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(testSIPLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistrar{
		t: t, transport: transport, ua: ua,
		user: "trunk", password: "s3cret", realm: "mds.test",
		dropped: map[string]bool{}, nonces: map[string]bool{}, bindings: map[string]time.Time{},
	}
	srv.OnRegister(r.handle)

	var wg sync.WaitGroup
	var closer func() error
	switch transport {
	case "udp":
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		r.addr = pc.LocalAddr().String()
		closer = pc.Close
		wg.Go(func() { _ = srv.ServeUDP(pc) })
	case "tcp":
		ln, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		r.addr = ln.Addr().String()
		closer = ln.Close
		wg.Go(func() { _ = srv.ServeTCP(ln) })
	default:
		t.Fatalf("transport %q", transport)
	}
	t.Cleanup(func() {
		_ = closer()
		_ = ua.Close()
		wg.Wait()
	})
	return r
}

// uri is the registrar's SIP URI as a Registration wants it.
func (r *testRegistrar) uri() string {
	if r.transport == "tcp" {
		return "sip:" + r.addr + ";transport=tcp"
	}
	return "sip:" + r.addr
}

func (r *testRegistrar) configure(f func(r *testRegistrar)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *testRegistrar) requests() []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenRequest(nil), r.reqs...)
}

// binding returns when contact's binding expires, if the registrar holds it.
func (r *testRegistrar) binding(contact string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp, ok := r.bindings[contact]
	if ok && time.Now().After(exp) {
		return exp, false
	}
	return exp, ok
}

func (r *testRegistrar) handle(req *sip.Request, tx sip.ServerTransaction) {
	r.mu.Lock()
	defer r.mu.Unlock()

	s := seenRequest{at: time.Now(), expires: -1, transport: req.Transport()}
	if h := req.CallID(); h != nil {
		s.callID = h.Value()
	}
	if h := req.CSeq(); h != nil {
		s.cseq = h.SeqNo
	}
	if v := req.Via(); v != nil {
		s.branch, _ = v.Params.Get("branch")
	}
	if h := req.GetHeader("Expires"); h != nil {
		s.expires, _ = strconv.Atoi(h.Value())
	}
	ct := req.Contact()
	if ct != nil {
		s.contact = ct.Address.String()
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		s.userAgent = h.Value()
	}
	if h := req.GetHeader("X-Resilience-Node"); h != nil {
		s.node = h.Value()
	}
	defer func() { r.reqs = append(r.reqs, s) }()

	if r.dropped[s.branch] {
		return // a retransmission of a dropped request
	}
	if r.drop > 0 {
		r.drop--
		r.dropped[s.branch] = true
		return
	}
	reply := func(code int, reason string, hdrs ...sip.Header) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		s.answer = code
		if err := tx.Respond(res); err != nil {
			r.t.Logf("test registrar: respond: %v", err)
		}
	}

	if r.algorithm != "" {
		ok, cred := r.checkAuth(req)
		s.authorized, s.authParams = ok, cred
		if !ok {
			nonce := randomHex(8)
			r.nonces[nonce] = true
			chal := fmt.Sprintf(`Digest realm="%s", nonce="%s", algorithm=%s, qop="auth"`, r.realm, nonce, r.algorithm)
			if r.proxyAuth {
				reply(407, "Proxy Authentication Required", sip.NewHeader("Proxy-Authenticate", chal))
			} else {
				reply(401, "Unauthorized", sip.NewHeader("WWW-Authenticate", chal))
			}
			return
		}
	}
	if ct == nil {
		reply(400, "Missing Contact")
		return
	}
	expires := s.expires
	if v, ok := ct.Params.Get("expires"); ok {
		expires, _ = strconv.Atoi(v)
	}
	if expires < 0 {
		expires = 3600
	}
	if expires > 0 && r.minExpires > 0 && expires < r.minExpires {
		reply(423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(r.minExpires)))
		return
	}
	if r.maxExpires > 0 && expires > r.maxExpires {
		expires = r.maxExpires
	}
	if expires == 0 {
		delete(r.bindings, s.contact)
	} else {
		r.bindings[s.contact] = time.Now().Add(time.Duration(expires) * time.Second)
	}

	var hdrs []sip.Header
	if r.peer != "" {
		hdrs = append(hdrs, sip.NewHeader("Contact", "<"+r.peer+">;expires=999"))
	}
	for c, exp := range r.bindings {
		left := int(time.Until(exp).Round(time.Second) / time.Second)
		hdrs = append(hdrs, sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d", c, left)))
	}
	if r.expiresHeader {
		hdrs = append(hdrs, sip.NewHeader("Expires", strconv.Itoa(expires)))
	}
	reply(200, "OK", hdrs...)
}

// checkAuth verifies the Authorization (or Proxy-Authorization) header
// with hashing written here from RFC 7616, independent of icholy/digest.
func (r *testRegistrar) checkAuth(req *sip.Request) (bool, *digest.Credentials) {
	name := "Authorization"
	if r.proxyAuth {
		name = "Proxy-Authorization"
	}
	h := req.GetHeader(name)
	if h == nil {
		return false, nil
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		r.t.Logf("test registrar: bad credentials %q: %v", h.Value(), err)
		return false, nil
	}
	if !r.nonces[cred.Nonce] || cred.Username != r.user || cred.Realm != r.realm ||
		!strings.EqualFold(cred.Algorithm, r.algorithm) || cred.QOP != "auth" ||
		cred.URI != req.Recipient.String() {
		r.t.Logf("test registrar: credentials do not match the challenge: %+v (request uri %s)", cred, req.Recipient.String())
		return false, cred
	}
	var hf func() hash.Hash
	switch strings.ToUpper(r.algorithm) {
	case "MD5":
		hf = md5.New
	case "SHA-256":
		hf = sha256.New
	default:
		r.t.Fatalf("algorithm %q", r.algorithm)
	}
	H := func(s string) string {
		h := hf()
		h.Write([]byte(s))
		return hex.EncodeToString(h.Sum(nil))
	}
	ha1 := H(r.user + ":" + r.realm + ":" + r.password)
	ha2 := H("REGISTER:" + cred.URI)
	want := H(fmt.Sprintf("%s:%s:%08x:%s:auth:%s", ha1, cred.Nonce, cred.Nc, cred.Cnonce, ha2))
	return want == cred.Response, cred
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newTestClient builds a client on 127.0.0.2 for regs and closes it at the
// end of the test.
func newTestClient(t *testing.T, mutate func(*Options), regs ...Registration) *Client {
	t.Helper()
	opts := Options{
		Node:          "xivo-main",
		LocalIP:       "127.0.0.2",
		Registrations: regs,
		Timeout:       time.Second,
		Logger:        testLogger(t),
	}
	if mutate != nil {
		mutate(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
