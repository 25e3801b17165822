package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

func sipRoute(main, standby *sipServer) SIPRoute {
	return SIPRoute{Name: "sip", Listen: "127.0.0.30:0", UDP: true, TCP: true,
		Main:    Backend{Name: "main-sip", Node: "xivo-main", Address: main.addr},
		Standby: Backend{Name: "standby-sip", Node: "xivo-standby", Address: standby.addr}}
}

// askUDP sends an OPTIONS on c and returns who answered.
func askUDP(t *testing.T, c *net.UDPConn, callID string) string {
	t.Helper()
	if _, err := c.Write(sipOptions(callID)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %s: %v", callID, err)
	}
	return serverOf(buf[:n])
}

func askTCP(c net.Conn, br *bufio.Reader, callID string) (string, error) {
	if _, err := c.Write(sipOptions(callID)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	msg, err := readSIP(br)
	if err != nil {
		return "", err
	}
	return serverOf(msg), nil
}

func TestEdge_SIP(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{SIP: []SIPRoute{sipRoute(main, standby)}, Nodes: nodes(xm, xs)})
	addr := e.SIPAddr("sip")
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// A connected socket only takes datagrams from the Edge's address:
	// answers must come back through the listening socket.
	phone, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	tcp, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tbr := bufio.NewReader(tcp)

	t.Run("before the switch, main answers", func(t *testing.T) {
		for i := range 3 {
			if got := askUDP(t, phone, fmt.Sprint("udp-before-", i)); got != "main" {
				t.Fatalf("UDP answered by %q, want main", got)
			}
		}
		if got, err := askTCP(tcp, tbr, "tcp-before"); err != nil || got != "main" {
			t.Fatalf("TCP answered by %q (%v), want main", got, err)
		}
		rs := e.Status().Routes[0]
		if rs.Backends[0].Flows != 1 || rs.Backends[0].Sessions != 1 {
			t.Errorf("flows %d sessions %d, want 1 and 1", rs.Backends[0].Flows, rs.Backends[0].Sessions)
		}
	})

	xs.set(node.Active, 2)
	waitChosen(t, e, "sip", "standby-sip")

	t.Run("after the switch, standby answers", func(t *testing.T) {
		if got := askUDP(t, phone, "udp-after"); got != "standby" {
			t.Fatalf("UDP answered by %q, want standby", got)
		}
		// The old TCP session is closed so that the phone reconnects.
		tcp.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := tbr.ReadByte(); err == nil {
			t.Fatal("old TCP session still open")
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := askTCP(c, bufio.NewReader(c), "tcp-after"); err != nil || got != "standby" {
			t.Fatalf("TCP answered by %q (%v), want standby", got, err)
		}
		rs := e.Status().Routes[0]
		if rs.Backends[0].Flows != 0 || rs.Backends[1].Flows != 1 {
			t.Errorf("flows main %d standby %d, want 0 and 1", rs.Backends[0].Flows, rs.Backends[1].Flows)
		}
	})

	// sipOptions has no From or To: not a request to answer 503 (see
	// TestEdge_SIP503), so it is dropped.
	t.Run("no usable side: an incomplete request dropped, connections refused", func(t *testing.T) {
		xm.set(node.Inactive, 1)
		xs.set(node.Inactive, 2)
		waitChosen(t, e, "sip", "")
		phone.Write(sipOptions("udp-none"))
		phone.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := phone.Read(make([]byte, 100)); err == nil {
			t.Error("an answer with no usable side")
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("TCP connection not closed")
		}
	})
}

func TestEdge_SIPFlowLimits(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	r := sipRoute(main, standby)
	r.TCP = false
	e, _, reg := startEdge(t, Options{SIP: []SIPRoute{r}, Nodes: nodes(xm, xs), SIPMaxFlows: 2, SIPFlowIdle: 100 * time.Millisecond})
	ua, _ := net.ResolveUDPAddr("udp", e.SIPAddr("sip"))
	var phones []*net.UDPConn
	for range 3 {
		p, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		phones = append(phones, p)
	}
	askUDP(t, phones[0], "a")
	askUDP(t, phones[1], "b")
	phones[2].Write(sipOptions("c"))
	phones[2].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := phones[2].Read(make([]byte, 100)); err == nil {
		t.Error("a third flow past the limit of 2")
	}
	if got := counter(t, reg, "resilience_edge_udp_dropped_total", map[string]string{"reason": "flow_limit"}); got != 1 {
		t.Errorf("dropped{flow_limit} = %v", got)
	}
	waitFor(t, 2*time.Second, "idle flows expire", func() bool { return e.Status().Routes[0].Backends[0].Flows == 0 })
	if got := askUDP(t, phones[2], "c2"); got != "main" {
		t.Errorf("after expiry: %q", got)
	}
}

// A REGISTER as phones send it: two Via lines (the second with two
// values), no To tag.
const sipRegister = "REGISTER sip:edge.test SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKreg1;rport\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp2, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKp3\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: \"Alice\" <sip:alice@edge.test>;tag=a73kszlfl\r\n" +
	"To: \"Alice\" <sip:alice@edge.test>\r\n" +
	"Call-ID: reg-1@127.0.0.1\r\n" +
	"CSeq: 42 REGISTER\r\n" +
	"Contact: <sip:alice@127.0.0.1:5062>\r\n" +
	"Expires: 3600\r\n" +
	"User-Agent: test-phone/1.0\r\n" +
	"Content-Length: 0\r\n\r\n"

// sipFullOptions is a complete OPTIONS (sipOptions has no From or To).
func sipFullOptions(callID string) string {
	return "OPTIONS sip:edge.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@edge.test>;tag=p1\r\n" +
		"To: <sip:edge.test>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Accept: application/sdp\r\n" +
		"Content-Length: 0\r\n\r\n"
}

// sipAnswer is a parsed answer: its first line and header lines in order.
type sipAnswer struct {
	status string
	lines  []string
}

func parseAnswer(t *testing.T, msg []byte) sipAnswer {
	t.Helper()
	head, body, ok := strings.Cut(string(msg), "\r\n\r\n")
	if !ok || body != "" {
		t.Fatalf("answer not one body-less message: %q", msg)
	}
	lines := strings.Split(head, "\r\n")
	return sipAnswer{lines[0], lines[1:]}
}

// all returns the values of a header, in order.
func (a sipAnswer) all(name string) []string {
	var out []string
	for _, l := range a.lines {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			out = append(out, v)
		}
	}
	return out
}

func (a sipAnswer) get(t *testing.T, name string) string {
	t.Helper()
	vs := a.all(name)
	if len(vs) != 1 {
		t.Fatalf("%s: %q, want one in %q", name, vs, a.lines)
	}
	return vs[0]
}

// send writes req and returns the answer, or nil when none comes within
// wait.
func send(t *testing.T, c *net.UDPConn, req string, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func phoneFor(t *testing.T, e *Edge) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", e.SIPAddr("sip"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEdge_SIP503(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Inactive, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, reg := startEdge(t, Options{SIP: []SIPRoute{sipRoute(main, standby)}, Nodes: nodes(xm, xs), RetryAfter: 7 * time.Second})
	waitChosen(t, e, "sip", "")
	phone := phoneFor(t, e)
	answered, dropped := 0, 0
	ask := func(t *testing.T, req string) sipAnswer {
		t.Helper()
		msg := send(t, phone, req, 2*time.Second)
		if msg == nil {
			t.Fatalf("no answer to %q", req)
		}
		answered++
		if len(msg) > len(req) {
			t.Errorf("answer of %d bytes to a request of %d", len(msg), len(req))
		}
		a := parseAnswer(t, msg)
		if a.status != "SIP/2.0 503 Service Unavailable" {
			t.Fatalf("status %q", a.status)
		}
		if got := a.get(t, "Retry-After"); got != "7" {
			t.Errorf("Retry-After %q, want 7", got)
		}
		if got := a.get(t, "Content-Length"); got != "0" {
			t.Errorf("Content-Length %q", got)
		}
		return a
	}
	nothing := func(t *testing.T, what, req string) {
		t.Helper()
		if msg := send(t, phone, req, 150*time.Millisecond); msg != nil {
			t.Errorf("%s answered: %q", what, msg)
		}
		dropped++
	}

	t.Run("REGISTER", func(t *testing.T) {
		a := ask(t, sipRegister)
		wantVia := []string{
			"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKreg1;rport",
			"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp2, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKp3",
		}
		if got := a.all("Via"); strings.Join(got, "|") != strings.Join(wantVia, "|") {
			t.Errorf("Via %q, want %q", got, wantVia)
		}
		if got := a.get(t, "From"); got != `"Alice" <sip:alice@edge.test>;tag=a73kszlfl` {
			t.Errorf("From %q", got)
		}
		to := a.get(t, "To")
		if tag, ok := strings.CutPrefix(to, `"Alice" <sip:alice@edge.test>;tag=`); !ok || tag == "" {
			t.Errorf("To %q, want the request's with a tag", to)
		}
		if got := a.get(t, "Call-ID"); got != "reg-1@127.0.0.1" {
			t.Errorf("Call-ID %q", got)
		}
		if got := a.get(t, "CSeq"); got != "42 REGISTER" {
			t.Errorf("CSeq %q", got)
		}
		// A retransmission gets the same answer, To tag included.
		if again := ask(t, sipRegister); again.get(t, "To") != to {
			t.Errorf("retransmission: To %q, then %q", to, again.get(t, "To"))
		}
	})

	t.Run("OPTIONS", func(t *testing.T) {
		a := ask(t, sipFullOptions("opt-1"))
		if got := a.get(t, "Via"); got != "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKopt-1" {
			t.Errorf("Via %q", got)
		}
		if got := a.get(t, "CSeq"); got != "1 OPTIONS" {
			t.Errorf("CSeq %q", got)
		}
		if to := a.get(t, "To"); !strings.HasPrefix(to, "<sip:edge.test>;tag=") {
			t.Errorf("To %q", to)
		}
		// A To that has a tag keeps it, and only it.
		req := strings.Replace(sipFullOptions("opt-2"), "To: <sip:edge.test>", "To: <sip:edge.test>;tag=x9", 1)
		if got := ask(t, req).get(t, "To"); got != "<sip:edge.test>;tag=x9" {
			t.Errorf("To %q, want its tag kept", got)
		}
	})

	t.Run("compact headers", func(t *testing.T) {
		req := "INVITE sip:bob@edge.test SIP/2.0\r\n" +
			"v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKinv1\r\n" +
			"f: <sip:alice@edge.test>;tag=f1\r\n" +
			"t: <sip:bob@edge.test>\r\n" +
			"i: inv-1\r\n" +
			"cseq: 7 INVITE\r\n" +
			"m: <sip:alice@127.0.0.1:5062>\r\n" +
			"c: application/sdp\r\n" +
			"l: 12\r\n\r\n" +
			"v=0\r\no=- 1 1\r\n"
		a := ask(t, req)
		if got := a.get(t, "Via"); got != "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKinv1" {
			t.Errorf("Via %q", got)
		}
		if got := a.get(t, "From"); got != "<sip:alice@edge.test>;tag=f1" {
			t.Errorf("From %q", got)
		}
		if got := a.get(t, "To"); !strings.HasPrefix(got, "<sip:bob@edge.test>;tag=") {
			t.Errorf("To %q", got)
		}
		if got := a.get(t, "Call-ID"); got != "inv-1" {
			t.Errorf("Call-ID %q", got)
		}
		if got := a.get(t, "CSeq"); got != "7 INVITE" {
			t.Errorf("CSeq %q", got)
		}
	})

	t.Run("no answer to an ACK, a response or garbage", func(t *testing.T) {
		ack := strings.NewReplacer("OPTIONS sip:", "ACK sip:", "1 OPTIONS", "1 ACK").Replace(sipFullOptions("ack-1"))
		nothing(t, "an ACK", ack)
		nothing(t, "a response", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKr\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
		nothing(t, "garbage", "\x00\x01hello\r\n\r\n")
		nothing(t, "a keep-alive", "\r\n\r\n")
		nothing(t, "a request without Call-ID", strings.Replace(sipFullOptions("x"), "Call-ID: x\r\n", "", 1))
		// The relay is still up.
		ask(t, sipFullOptions("after-garbage"))
	})

	t.Run("counted", func(t *testing.T) {
		if got := counter(t, reg, "resilience_edge_requests_total", map[string]string{"route": "sip", "backend": "none", "code": "503"}); got != float64(answered) {
			t.Errorf("requests{none,503} = %v, want %d", got, answered)
		}
		if got := counter(t, reg, "resilience_edge_udp_dropped_total", map[string]string{"route": "sip", "reason": "no_backend"}); got != float64(dropped) {
			t.Errorf("udp_dropped{no_backend} = %v, want %d", got, dropped)
		}
	})

	t.Run("a usable side again: relayed", func(t *testing.T) {
		xm.set(node.Active, 1)
		waitChosen(t, e, "sip", "main-sip")
		msg := send(t, phone, sipFullOptions("relayed"), 2*time.Second)
		if msg == nil {
			t.Fatal("no answer once main is usable")
		}
		if !bytes.HasPrefix(msg, []byte("SIP/2.0 200 ")) || serverOf(msg) != "main" {
			t.Errorf("answer %q, want main's 200", msg)
		}
	})
}

func TestEdge_SIP503RateLimit(t *testing.T) {
	main, standby := startSIP(t, "127.0.0.2", "main"), startSIP(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Inactive, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	r := sipRoute(main, standby)
	r.TCP = false
	e, _, _ := startEdge(t, Options{SIP: []SIPRoute{r}, Nodes: nodes(xm, xs)},
		func(e *Edge) { e.sips[0].limit.rate = 3 })
	waitChosen(t, e, "sip", "")
	phone := phoneFor(t, e)
	for i := range 6 {
		phone.Write([]byte(sipFullOptions(fmt.Sprint("flood-", i))))
	}
	got := 0
	buf := make([]byte, 4096)
	for {
		phone.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := phone.Read(buf); err != nil {
			break
		}
		got++
	}
	if got != 3 {
		t.Errorf("%d answers to 6 requests at 3 a second", got)
	}
}

func TestTokenBucket(t *testing.T) {
	b := tokenBucket{rate: 2}
	t0 := time.Now()
	for i, want := range []bool{true, true, false} {
		if got := b.allow(t0); got != want {
			t.Errorf("at once, #%d: %v", i, got)
		}
	}
	if !b.allow(t0.Add(500*time.Millisecond)) || b.allow(t0.Add(500*time.Millisecond)) {
		t.Error("half a second at 2/s: want one more, then none")
	}
	// The burst is bounded by the rate, however long the pause.
	b.allow(t0.Add(time.Hour))
	b.allow(t0.Add(time.Hour))
	if b.allow(t0.Add(time.Hour)) {
		t.Error("more than the rate in a burst")
	}
}

func TestSIP503(t *testing.T) {
	opts := sipFullOptions("u1")
	tooMany := strings.Replace(opts, "Accept:", strings.Repeat("X-Pad: 1\r\n", 64)+"Accept:", 1)
	big := strings.Replace(opts, "Accept: application/sdp", "X-Pad: "+strings.Repeat("x", udpFlowBuf), 1)
	for _, c := range []struct {
		name, req string
		ok        bool
	}{
		{"OPTIONS", opts, true},
		{"bare LF line ends", strings.ReplaceAll(sipRegister, "\r\n", "\n"), true},
		{"a folded Via", strings.Replace(opts, "Via: SIP/2.0/UDP 127.0.0.1:5062;", "Via: SIP/2.0/UDP 127.0.0.1:5062\r\n  ;", 1), true},
		{"64 header lines", strings.Replace(opts, "Accept:", strings.Repeat("X-Pad: 1\r\n", 56)+"Accept:", 1), true},
		{"too many header lines", tooMany, false},
		{"larger than the buffer", big, false},
		{"ACK", strings.NewReplacer("OPTIONS sip:", "ACK sip:", "1 OPTIONS", "1 ACK").Replace(opts), false},
		{"a response", "SIP/2.0 503 Service Unavailable" + opts[strings.Index(opts, "\r\n"):], false},
		{"CSeq of another method", strings.Replace(opts, "1 OPTIONS", "1 INVITE", 1), false},
		{"no Via", strings.Replace(opts, "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKu1\r\n", "", 1), false},
		{"two From", strings.Replace(opts, "To:", "From: <sip:x@y>\r\nTo:", 1), false},
		{"an empty From, then one", strings.Replace(opts, "From:", "From:\r\nFrom:", 1), false},
		{"no end of headers", strings.TrimSuffix(opts, "\r\n\r\n"), false},
		{"a control character", strings.Replace(opts, "u1\r\nCSeq", "u1\rX\r\nCSeq", 1), false},
		{"HTTP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		// Its answer, with full names, a tag and Retry-After, is larger.
		{"smaller than its answer", "OPTIONS sip:a SIP/2.0\r\nv:SIP/2.0/UDP a\r\nf:a\r\nt:b\r\ni:c\r\nCSeq:1 OPTIONS\r\n\r\n", false},
	} {
		a := sip503(nil, []byte(c.req), "5")
		if (a != nil) != c.ok {
			t.Errorf("%s: answer %q, want one: %v", c.name, a, c.ok)
			continue
		}
		if a != nil && !strings.HasPrefix(string(a), "SIP/2.0 503 Service Unavailable\r\n") {
			t.Errorf("%s: %q", c.name, a)
		}
	}
	folded := sip503(nil, []byte(strings.Replace(opts, "Via: SIP/2.0/UDP 127.0.0.1:5062;", "Via: SIP/2.0/UDP 127.0.0.1:5062\r\n  ;", 1)), "5")
	if !bytes.Contains(folded, []byte("\r\nVia: SIP/2.0/UDP 127.0.0.1:5062 ;branch=z9hG4bKu1\r\n")) {
		t.Errorf("folded Via not unfolded: %q", folded)
	}
	for _, c := range []struct {
		to  string
		tag bool
	}{
		{"<sip:b@c>", false},
		{"<sip:b@c;tag=uri-param>", false},
		{"<sip:b@c>;tag=1", true},
		{"\"B;tag=x\" <sip:b@c>", false},
		{"sip:b@c;TAG=1", true},
		{"sip:b@c;tagx=1", false},
		{"<sip:b@c>;x=1 ; tag = 2", true},
	} {
		if got := sipHasTag([]byte(c.to)); got != c.tag {
			t.Errorf("sipHasTag(%q) = %v", c.to, got)
		}
	}
}

func FuzzSIP503(f *testing.F) {
	f.Add([]byte(sipRegister))
	f.Add([]byte(sipFullOptions("fz")))
	f.Add([]byte("INVITE sip:b@c SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\n ;rport\r\nf: <sip:a@b>;tag=1\r\nt: \"B\" <sip:b@c>\r\ni: x\r\nCSeq: 2 INVITE\r\nl: 0\r\n\r\n"))
	f.Add([]byte("ACK sip:b@c SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 ACK\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, req []byte) {
		in := bytes.Clone(req)
		a := sip503(nil, req, "5")
		if !bytes.Equal(in, req) {
			t.Fatal("the request was changed")
		}
		if a == nil {
			return
		}
		if len(a) > len(req) {
			t.Fatalf("answer of %d bytes to %d: %q", len(a), len(req), a)
		}
		if !bytes.HasPrefix(a, []byte("SIP/2.0 503 ")) {
			t.Fatalf("answer %q", a)
		}
		if bytes.HasPrefix(req, []byte("ACK ")) || bytes.HasPrefix(req, []byte("SIP/2.0")) {
			t.Fatalf("answered %q", req)
		}
	})
}
