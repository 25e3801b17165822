package mds

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRegistrar_BadInput sends what no SIP stack would over real sockets:
// each case is rejected (no response, a closed TCP connection, or an error
// status), nothing is bound, and the registrar then still serves a good
// REGISTER on the same transport.
func TestRegistrar_BadInput(t *testing.T) {
	// Outcomes.
	const (
		silent = -1 // no response; for TCP, the connection may stay open
		closed = -2 // TCP: the connection is closed without a response
	)
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("a", n) }
	many := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, "X-H"+strings.Repeat("i", i%5)+": v")
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 2048)
	for i := range noise {
		noise[i] = byte(rng.UintN(256))
	}

	type tc struct {
		name string
		// msg builds the input from a valid, unauthenticated REGISTER
		// over c; a valid nonce-bearing challenge is in chal.
		msg func(c *rawConn, m rawRequest, chal string) []byte
		// want per transport; a missing transport skips the case there.
		want map[string]int
	}
	both := func(udp, tcp int) map[string]int { return map[string]int{"UDP": udp, "TCP": tcp} }
	withAuth := func(m rawRequest, chal string) rawRequest {
		m.cseq++
		m.auth = authorization(chal, testUser, testPass, "REGISTER", m.ruri)
		return m
	}
	cases := []tc{
		{"garbage", func(*rawConn, rawRequest, string) []byte { return []byte("hello there\r\n\r\n") }, both(silent, closed)},
		{"random bytes", func(*rawConn, rawRequest, string) []byte { return noise }, both(silent, closed)},
		{"NUL bytes in headers", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "Max-Forwards: 70", "Max-Forwards: \x00\x00", 1))
		}, both(silent, closed)},
		{"a response", func(*rawConn, rawRequest, string) []byte {
			return []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.52:5060;branch=z9hG4bKx\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n")
		}, both(silent, silent)},
		{"truncated headers", func(_ *rawConn, m rawRequest, _ string) []byte {
			s := m.String()
			return []byte(s[:len(s)/2])
		}, map[string]int{"UDP": silent}},
		{"body shorter than Content-Length", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "Content-Length: 0", "Content-Length: 50", 1))
		}, map[string]int{"UDP": silent}},
		{"huge Content-Length", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "Content-Length: 0", "Content-Length: 99999999", 1))
		}, both(silent, closed)},
		{"no Content-Length on a stream", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "Content-Length: 0\r\n", "", 1))
		}, map[string]int{"TCP": closed}},
		{"no Via", func(_ *rawConn, m rawRequest, _ string) []byte { return dropHeader(m.String(), "Via") }, both(silent, silent)},
		{"no Call-ID", func(_ *rawConn, m rawRequest, _ string) []byte { return dropHeader(m.String(), "Call-ID") }, both(400, 400)},
		{"no To", func(_ *rawConn, m rawRequest, _ string) []byte { return dropHeader(m.String(), "To") }, both(400, 400)},
		{"CSeq of another method", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1))
		}, both(400, 400)},
		{"CSeq not a number", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), "CSeq: 1 REGISTER", "CSeq: x REGISTER", 1))
		}, both(silent, closed)},
		{"SIP/3.0", func(_ *rawConn, m rawRequest, _ string) []byte {
			return []byte(strings.Replace(m.String(), " SIP/2.0\r\n", " SIP/3.0\r\n", 1))
		}, both(sip.StatusVersionNotSupported, sip.StatusVersionNotSupported)},
		// A datagram is screened before parsing, a stream message after.
		{"too many headers", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.extra = many(maxHeaders)
			return []byte(m.String())
		}, both(silent, 400)},
		{"too many contacts in one header", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.contacts = []string{strings.Repeat("<sip:a@b>,", 1000) + "<sip:a@b>"}
			return []byte(m.String())
		}, both(silent, 400)},
		{"huge header over 16 KiB", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.extra = []string{pad(maxMessageSize)}
			return []byte(m.String())
		}, both(silent, closed)},
		{"datagram over 64 KiB", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.extra = []string{pad(65000)}
			return []byte(m.String())
		}, map[string]int{"UDP": silent}},
		{"long Call-ID", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.callID = strings.Repeat("c", 1000)
			return []byte(m.String())
		}, both(400, 400)},
		{"long header under the limit, unauthenticated", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.extra = []string{pad(10 << 10)}
			return []byte(m.String())
		}, both(401, 401)},
		{"wrong response", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.auth = strings.Replace(m.auth, `response="`, `response="0`, 1)
			return []byte(m.String())
		}, both(403, 403)},
		{"forged nonce", func(_ *rawConn, m rawRequest, chal string) []byte {
			chal = strings.Replace(chal, param(chal, "nonce"), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1)
			m.cseq++
			m.auth = authorization(chal, testUser, "guess", "REGISTER", m.ruri)
			return []byte(m.String())
		}, both(401, 401)},
		{"unterminated quote in Authorization", func(_ *rawConn, m rawRequest, _ string) []byte {
			m.auth = `Digest username="xivo, realm="mds-1`
			return []byte(m.String())
		}, both(401, 401)},
		{"ten Authorization headers", func(_ *rawConn, m rawRequest, _ string) []byte {
			for range 10 {
				m.extra = append(m.extra, `Authorization: Digest username="xivo", realm="mds-1", nonce="x", uri="sip:x", response="00"`)
			}
			return []byte(m.String())
		}, both(401, 401)},
		{"unsupported algorithm", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.auth = strings.Replace(m.auth, "algorithm=SHA-256", "algorithm=SHA-512", 1)
			return []byte(m.String())
		}, both(401, 401)},
		{"nc not hex", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.auth = strings.Replace(m.auth, "nc=00000001", "nc=0000000z", 1)
			return []byte(m.String())
		}, both(401, 401)},
		{"authenticated, tel: contact", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.contacts = []string{"<tel:+3312345678>"}
			return []byte(m.String())
		}, both(400, 400)},
		{"authenticated, contact too long", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.contacts = []string{"<sip:" + strings.Repeat("u", 400) + "@127.0.0.52>"}
			return []byte(m.String())
		}, both(400, 400)},
		{"authenticated, unparsable contact", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.contacts = []string{"<sip:@@@"}
			return []byte(m.String())
		}, both(silent, closed)},
		{"authenticated, node name too long", func(_ *rawConn, m rawRequest, chal string) []byte {
			m = withAuth(m, chal)
			m.node = strings.Repeat("n", 100)
			return []byte(m.String())
		}, both(400, 400)},
	}

	r, _ := startRegistrar(t, nil)
	for _, transport := range []string{"UDP", "TCP"} {
		for _, c := range cases {
			want, ok := c.want[transport]
			if !ok {
				continue
			}
			t.Run(transport+"/"+c.name, func(t *testing.T) {
				conn := dialRaw(t, r, transport)
				m := conn.base(r)
				chal := conn.exchange(m.String()).GetHeader("WWW-Authenticate").Value()
				conn.send(c.msg(conn, m, chal))
				switch want {
				case silent:
					if res := conn.recv(150 * time.Millisecond); res != nil {
						t.Fatalf("got %d %s, want no response", res.StatusCode, res.Reason)
					}
				case closed:
					if !conn.closed(2 * time.Second) {
						t.Fatal("connection still open")
					}
				default:
					res := conn.recv(2 * time.Second)
					if res == nil {
						t.Fatalf("no response, want %d", want)
					}
					if res.StatusCode != want {
						t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, want)
					}
				}
				if bs := r.Bindings(); len(bs) != 0 {
					t.Fatalf("bound: %+v", bs)
				}
				// Still alive: a good REGISTER on a fresh connection.
				good := dialRaw(t, r, transport)
				gm := good.base(r)
				if res := good.authed(gm, testPass); res.StatusCode != 200 {
					t.Fatalf("good REGISTER afterwards: got %d %s", res.StatusCode, res.Reason)
				}
				gm.expires = "0"
				gm.cseq = 10
				if res := good.authed(gm, testPass); res.StatusCode != 200 || len(r.Bindings()) != 0 {
					t.Fatalf("unregister afterwards: got %d, bindings %+v", res.StatusCode, r.Bindings())
				}
			})
		}
	}
}

// dropHeader removes the first header line with that name.
func dropHeader(msg, name string) []byte {
	lines := strings.Split(msg, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, name+":") {
			lines = append(lines[:i], lines[i+1:]...)
			break
		}
	}
	return []byte(strings.Join(lines, "\r\n"))
}

// TestRegistrar_TCPPipelined checks that several messages in one TCP
// segment, and one message split over many, are all framed right.
func TestRegistrar_TCPPipelined(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	c := dialRaw(t, r, "TCP")
	m := c.base(r)
	var b bytes.Buffer
	for i := range 3 {
		m.cseq = i + 1
		b.WriteString(m.String())
	}
	c.send(b.Bytes())
	for i := range 3 {
		if res := c.recv(2 * time.Second); res == nil || res.StatusCode != 401 {
			t.Fatalf("response %d: %v, want 401", i, res)
		}
	}
	msg := []byte(m.String())
	for i := range msg {
		c.send(msg[i : i+1])
	}
	if res := c.recv(2 * time.Second); res == nil || res.StatusCode != 401 {
		t.Fatalf("byte-by-byte message: %v, want 401", res)
	}
}
