package mds

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Loopback addresses of the tests: the registrar, and two XiVO nodes.
const (
	mdsHost     = "127.0.0.51"
	mainHost    = "127.0.0.52"
	standbyHost = "127.0.0.53"
	testUser    = "xivo"
	testPass    = "s3cret"
)

// startRegistrar starts a registrar on mdsHost, UDP and TCP on free
// ports, closed at the end of the test. edit may change the options,
// tweaks the test knobs before Start. The counter counts OnChange calls.
func startRegistrar(t *testing.T, edit func(*Options), tweaks ...func(*Registrar)) (*Registrar, *atomic.Int64) {
	t.Helper()
	changes := new(atomic.Int64)
	opts := Options{
		Name:     "mds-1",
		UDP:      mdsHost + ":0",
		TCP:      mdsHost + ":0",
		Users:    map[string]string{testUser: testPass, "other": "pw2"},
		Logger:   testLogger(t),
		OnChange: func() { changes.Add(1) },
	}
	if edit != nil {
		edit(&opts)
	}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweaks {
		f(r)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, changes
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logBuffer keeps what a registrar logs, for the tests that check it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// capture makes o log to t and to the returned buffer.
func capture(t *testing.T, o *Options) *logBuffer {
	b := new(logBuffer)
	o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), b), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return b
}

// sipClient is a trunk client built with sipgo the way internal/trunk is:
// one Call-ID for all its REGISTERs, CSeq growing, digest on 401.
type sipClient struct {
	t         *testing.T
	ua        *sipgo.UserAgent
	cl        *sipgo.Client
	host      string // local address and Contact host
	node      string
	user      string
	pass      string
	transport string // "udp" or "tcp"
	registrar string // ip:port
	callID    string
	cseq      uint32
	md5Only   bool // answer the MD5 challenge instead of the first one
}

func newSIPClient(t *testing.T, r *Registrar, host, node, transport string) *sipClient {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("resilience/"+node), sipgo.WithUserAgentHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host), sipgo.WithClientConnectionAddr(host+":0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	addr := r.UDPAddr()
	if transport == "tcp" {
		addr = r.TCPAddr()
	}
	return &sipClient{t: t, ua: ua, cl: cl, host: host, node: node, user: testUser, pass: testPass,
		transport: transport, registrar: addr, callID: sip.GenerateTagN(16) + "@" + host, cseq: 0}
}

// request builds a REGISTER; expires < 0 leaves Expires out, contact ""
// leaves Contact out.
func (c *sipClient) request(contact string, expires int) *sip.Request {
	host, port, _ := net.SplitHostPort(c.registrar)
	p, _ := strconv.Atoi(port)
	ruri := sip.Uri{Scheme: "sip", Host: host, Port: p}
	if c.transport == "tcp" {
		ruri.UriParams = sip.HeaderParams{{K: "transport", V: "tcp"}}
	}
	req := sip.NewRequest(sip.REGISTER, ruri)
	aor := sip.Uri{Scheme: "sip", User: c.user, Host: host}
	from := &sip.FromHeader{Address: aor}
	from.Params.Add("tag", sip.GenerateTagN(8))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(c.callID)
	req.AppendHeader(&cid)
	c.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.cseq, MethodName: sip.REGISTER})
	if contact != "" {
		req.AppendHeader(sip.NewHeader("Contact", contact))
	}
	if expires >= 0 {
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	}
	if c.node != "" {
		req.AppendHeader(sip.NewHeader(nodeHeader, c.node))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", "resilience/"+c.node))
	req.SetTransport(strings.ToUpper(c.transport))
	return req
}

func (c *sipClient) contact() string {
	return "<sip:" + c.user + "@" + c.host + ":5070>"
}

// register sends a REGISTER, answers a 401, and returns the final
// response and the challenge (nil if none).
func (c *sipClient) register(contact string, expires int) (final, challenge *sip.Response) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := c.request(contact, expires)
	res, err := c.cl.Do(ctx, req)
	if err != nil {
		c.t.Fatalf("REGISTER: %v", err)
	}
	if res.StatusCode != sip.StatusUnauthorized {
		return res, nil
	}
	challenge = res
	if c.md5Only {
		res = res.Clone()
		res.RemoveHeader("WWW-Authenticate")
		for _, h := range challenge.GetHeaders("WWW-Authenticate") {
			if strings.Contains(h.Value(), "algorithm=MD5") {
				res.AppendHeader(sip.NewHeader("WWW-Authenticate", h.Value()))
			}
		}
	}
	final, err = c.cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: c.user, Password: c.pass})
	if err != nil {
		c.t.Fatalf("REGISTER with digest: %v", err)
	}
	c.cseq = req.CSeq().SeqNo
	return final, challenge
}

// mustRegister registers c's contact and fails the test on anything but
// 200.
func (c *sipClient) mustRegister(expires int) *sip.Response {
	c.t.Helper()
	res, _ := c.register(c.contact(), expires)
	if res.StatusCode != sip.StatusOK {
		c.t.Fatalf("REGISTER: got %d %s, want 200", res.StatusCode, res.Reason)
	}
	return res
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawRequest is a REGISTER (or other request) written by hand, for the
// inputs a SIP stack would refuse to produce.
type rawRequest struct {
	method    string
	ruri      string
	transport string // UDP or TCP, for the Via
	local     string // ip:port for the Via
	user      string // To and From user
	host      string // To and From host
	callID    string
	cseq      int
	contacts  []string
	expires   string // "" leaves the header out
	node      string
	auth      string // Authorization value
	extra     []string
}

func (m rawRequest) String() string {
	method := m.method
	if method == "" {
		method = "REGISTER"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, m.ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport\r\n", m.transport, m.local, sip.GenerateTagN(12))
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=f1\r\n", m.user, m.host)
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", m.user, m.host)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", m.callID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", m.cseq, method)
	for _, c := range m.contacts {
		fmt.Fprintf(&b, "Contact: %s\r\n", c)
	}
	if m.expires != "" {
		fmt.Fprintf(&b, "Expires: %s\r\n", m.expires)
	}
	if m.node != "" {
		fmt.Fprintf(&b, "%s: %s\r\n", nodeHeader, m.node)
	}
	if m.auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", m.auth)
	}
	for _, e := range m.extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}

// digestResponse is an implementation of RFC 7616 independent of the
// registrar's, so that the tests and the fuzz oracle do not trust the code
// they check.
func digestResponse(alg, user, realm, pass, method, uri, nonce, nc, cnonce, qop string) string {
	var nh func() hash.Hash
	switch alg {
	case "SHA-256":
		nh = sha256.New
	default:
		nh = md5.New
	}
	h := func(s string) string {
		x := nh()
		x.Write([]byte(s))
		return hex.EncodeToString(x.Sum(nil))
	}
	ha1 := h(user + ":" + realm + ":" + pass)
	ha2 := h(method + ":" + uri)
	return h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

// authorization answers a challenge (a WWW-Authenticate value).
func authorization(challenge, user, pass, method, uri string) string {
	realm := param(challenge, "realm")
	nonce := param(challenge, "nonce")
	alg := param(challenge, "algorithm")
	resp := digestResponse(alg, user, realm, pass, method, uri, nonce, "00000001", "c0ffee", "auth")
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s, qop=auth, nc=00000001, cnonce="c0ffee"`,
		user, realm, nonce, uri, resp, alg)
}

// param reads one parameter of a challenge, for the tests only.
func param(v, name string) string {
	for _, part := range strings.Split(strings.TrimPrefix(v, "Digest "), ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(k, name) {
			return strings.Trim(val, `"`)
		}
	}
	return ""
}

// rawConn exchanges hand-written messages with the registrar over UDP or
// TCP.
type rawConn struct {
	t         *testing.T
	conn      net.Conn
	transport string
	stream    *sip.ParserStream
	pending   []sip.Message
}

func dialRaw(t *testing.T, r *Registrar, transport string) *rawConn {
	t.Helper()
	network, addr := "udp", r.UDPAddr()
	if transport == "TCP" {
		network, addr = "tcp", r.TCPAddr()
	}
	d := net.Dialer{LocalAddr: localAddr(network)}
	c, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, conn: c, transport: transport, stream: sip.NewParser().NewSIPStream()}
}

func localAddr(network string) net.Addr {
	if network == "tcp" {
		return &net.TCPAddr{IP: net.ParseIP(mainHost)}
	}
	return &net.UDPAddr{IP: net.ParseIP(mainHost)}
}

func (c *rawConn) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv waits up to within for a response; nil if none came (or the
// connection was closed).
func (c *rawConn) recv(within time.Duration) *sip.Response {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64<<10)
	for {
		if len(c.pending) > 0 {
			m := c.pending[0]
			c.pending = c.pending[1:]
			if res, ok := m.(*sip.Response); ok {
				return res
			}
			continue
		}
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil
		}
		if c.transport == "UDP" {
			m, err := sip.ParseMessage(buf[:n])
			if err != nil {
				c.t.Fatalf("unparsable response %q: %v", buf[:n], err)
			}
			c.pending = append(c.pending, m)
			continue
		}
		err = c.stream.ParseSIPStream(buf[:n], func(m sip.Message) { c.pending = append(c.pending, m) })
		if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
			c.t.Fatalf("unparsable response stream: %v", err)
		}
	}
}

// closed reports whether the server closed a TCP connection within.
func (c *rawConn) closed(within time.Duration) bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 1024)
	for {
		_, err := c.conn.Read(buf)
		if err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// exchange sends m and returns the response.
func (c *rawConn) exchange(m string) *sip.Response {
	c.t.Helper()
	c.send([]byte(m))
	res := c.recv(2 * time.Second)
	if res == nil {
		c.t.Fatalf("no response to:\n%s", m)
	}
	return res
}

// base is a REGISTER from mainHost over this connection, without
// credentials.
func (c *rawConn) base(r *Registrar) rawRequest {
	host, _, _ := net.SplitHostPort(c.conn.RemoteAddr().String())
	return rawRequest{
		ruri:      "sip:" + host,
		transport: c.transport,
		local:     c.conn.LocalAddr().String(),
		user:      testUser,
		host:      host,
		callID:    "raw-" + sip.GenerateTagN(10),
		cseq:      1,
		contacts:  []string{"<sip:" + testUser + "@" + mainHost + ":5070>"},
		expires:   "120",
		node:      "xivo-main",
	}
}

// authed sends m, answers the challenge with pass, and returns the final
// response; m.cseq is bumped for the second request.
func (c *rawConn) authed(m rawRequest, pass string) *sip.Response {
	c.t.Helper()
	res := c.exchange(m.String())
	if res.StatusCode != sip.StatusUnauthorized {
		return res
	}
	m.cseq++
	m.auth = authorization(res.GetHeader("WWW-Authenticate").Value(), m.user, pass, "REGISTER", m.ruri)
	return c.exchange(m.String())
}

// contactsOf lists the Contact values of a response.
func contactsOf(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}
