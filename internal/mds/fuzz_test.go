package mds

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The fuzz registrar runs on a fixed clock with a fixed key, so that the
// one nonce it can issue is known in advance and seeds can carry valid
// credentials: the fuzzer then mutates authenticated requests too, and
// reaches the binding code, not only the challenge.
var (
	fuzzNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fuzzSrc = netip.MustParseAddrPort("127.0.0.52:5070")
)

const fuzzCallID = "fuzz-call"

func newFuzzRegistrar(t testing.TB) *Registrar {
	r, err := New(Options{Name: "mds-1", Users: map[string]string{testUser: testPass, "other": "pw2"},
		MaxBindingsPerAOR: 3, MaxBindings: 5})
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return fuzzNow }
	r.auth.key = []byte("fixed fuzz key, never in production")
	return r
}

// fuzzRequest is a REGISTER from fuzzSrc with CSeq cseq; alg "" leaves
// credentials out.
func fuzzRequest(r *Registrar, alg string, cseq int, edit func(*rawRequest)) (msg, response string) {
	m := rawRequest{
		ruri: "sip:127.0.0.51", transport: "UDP", local: fuzzSrc.String(), user: testUser, host: "127.0.0.51",
		callID: fuzzCallID, cseq: cseq, contacts: []string{"<sip:xivo@127.0.0.52:5070>"}, expires: "120", node: "xivo-main",
	}
	if edit != nil {
		edit(&m)
	}
	if alg != "" {
		chal := r.auth.challenges(fuzzNow, false)[0]
		if alg == "MD5" {
			chal = r.auth.challenges(fuzzNow, false)[1]
		}
		m.auth = authorization(chal, m.user, testPass, "REGISTER", m.ruri)
		response = param(m.auth, "response")
	}
	return m.String(), response
}

// FuzzHandle feeds arbitrary bytes to the request path, as a datagram
// (handle) and as a stream (sipgo's stream parser, then serve, as a TCP
// connection does). It checks that nothing panics, that every answer is a
// well-formed SIP response of bounded size, and that the bindings change
// only for a request carrying one of the valid digest responses of the
// seeds: the fuzzer cannot compute a digest, so any other change would be
// an authentication bypass.
func FuzzHandle(f *testing.F) {
	r := newFuzzRegistrar(f)
	var valid []string
	add := func(msg, response string) {
		f.Add([]byte(msg))
		if response != "" {
			valid = append(valid, response)
		}
	}
	add(fuzzRequest(r, "", 1, nil))
	add(fuzzRequest(r, "SHA-256", 2, nil))
	add(fuzzRequest(r, "MD5", 2, nil))
	add(fuzzRequest(r, "SHA-256", 2, func(m *rawRequest) { m.expires = "0" }))
	add(fuzzRequest(r, "SHA-256", 2, func(m *rawRequest) { m.contacts = []string{"*"}; m.expires = "0" }))
	add(fuzzRequest(r, "SHA-256", 2, func(m *rawRequest) {
		m.contacts = []string{"<sip:xivo@127.0.0.52:5071;transport=tcp>;expires=3600", "<sip:xivo@127.0.0.52:5072>;q=0.5"}
	}))
	add(fuzzRequest(r, "SHA-256", 2, func(m *rawRequest) { m.callID = "other-call"; m.cseq = 1 }))
	add(fuzzRequest(r, "SHA-256", 2, func(m *rawRequest) { m.expires = "30" }))
	add(fuzzRequest(r, "MD5", 2, func(m *rawRequest) { m.contacts = nil }))
	add(fuzzRequest(r, "", 1, func(m *rawRequest) { m.method = "OPTIONS" }))
	add(fuzzRequest(r, "", 1, func(m *rawRequest) { m.extra = []string{"Require: path", "Expires: 1"} }))
	add("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.52:5060;branch=z9hG4bKx\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n", "")
	add("\r\n\r\n", "")
	add("REGISTER sip:x SIP/2.0\r\nv: SIP/2.0/TCP h\r\nm: <sip:a@b>, <sip:c@d>\r\nl: 0\r\n\r\n", "")

	bind, _ := fuzzRequest(r, "SHA-256", 1, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newFuzzRegistrar(t)
		if res := parseResponse(t, r.handle([]byte(bind), fuzzSrc, "UDP"), len(bind)); res == nil || res.StatusCode != 200 {
			t.Fatalf("pre-state REGISTER not bound: %v", res)
		}
		before := r.Bindings()

		out := r.handle(data, fuzzSrc, "UDP")
		parseResponse(t, out, len(data))
		checkBindings(t, r, before, data, valid)

		// The same bytes as a TCP stream, in reads cut as serveConn's
		// buffer cuts them, the first one in the middle.
		r = newFuzzRegistrar(t)
		_ = r.handle([]byte(bind), fuzzSrc, "TCP")
		before = r.Bindings()
		par := r.parser.NewSIPStream()
		defer par.Close()
		var chunks [][]byte
		for rest, n := data, min(len(data)/2, tcpReadBuf); len(rest) > 0; n = tcpReadBuf {
			n = max(min(n, len(rest)), 1)
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		for _, chunk := range chunks {
			err := par.ParseSIPStream(chunk, func(msg sip.Message) {
				out, _ := r.serve(msg, fuzzSrc, "TCP")
				parseResponse(t, out, maxMessageSize)
			})
			if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
				break // the connection would be closed
			}
		}
		checkBindings(t, r, before, data, valid)
	})
}

// parseResponse checks that out is nil or one well-formed response, not
// much larger than the request it answers.
func parseResponse(t *testing.T, out []byte, inLen int) *sip.Response {
	t.Helper()
	if out == nil {
		return nil
	}
	// Headers echoed from the request, plus at most a few contacts, the
	// challenges and our own headers.
	if limit := inLen + 4096; len(out) > limit {
		t.Fatalf("response of %d bytes to %d bytes of input", len(out), inLen)
	}
	m, err := sip.ParseMessage(out)
	if err != nil {
		t.Fatalf("unparsable response %q: %v", out, err)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("answer is not a response: %q", out)
	}
	return res
}

func checkBindings(t *testing.T, r *Registrar, before []Binding, data []byte, valid []string) {
	t.Helper()
	after := r.Bindings()
	if len(after) > r.store.maxTotal {
		t.Fatalf("%d bindings, over the limit of %d", len(after), r.store.maxTotal)
	}
	if slices.Equal(before, after) {
		return
	}
	lower := bytes.ToLower(data)
	for _, v := range valid {
		if bytes.Contains(lower, []byte(v)) {
			for _, b := range after {
				if !strings.HasPrefix(b.AOR, "sip:"+testUser+"@") {
					t.Fatalf("bound the AOR of another user: %+v", b)
				}
			}
			return
		}
	}
	t.Fatalf("bindings changed without valid credentials:\nbefore %+v\nafter  %+v\ninput %q", before, after, data)
}
