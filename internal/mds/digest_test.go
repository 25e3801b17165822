package mds

import (
	"strings"
	"testing"
	"time"
)

func TestParseCredentials(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want credentials
		err  bool
	}{
		{name: "typical", in: `Digest username="xivo", realm="mds-1", nonce="n1", uri="sip:127.0.0.51", response="abc", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c1"`,
			want: credentials{username: "xivo", realm: "mds-1", nonce: "n1", uri: "sip:127.0.0.51", response: "abc", algorithm: "SHA-256", qop: "auth", nc: "00000001", cnonce: "c1"}},
		{name: "scheme case, no spaces, quoted qop", in: `digest username="u",realm="r",qop="auth",nc=00000002`,
			want: credentials{username: "u", realm: "r", qop: "auth", nc: "00000002"}},
		{name: "escapes and commas in quotes", in: `Digest username="a\"b,c", realm="r\\"`,
			want: credentials{username: `a"b,c`, realm: `r\`}},
		{name: "unknown parameters ignored", in: `Digest opaque="x", userhash=false, username="u"`,
			want: credentials{username: "u"}},
		{name: "spaces around =", in: `Digest username = "u" , realm= r`,
			want: credentials{username: "u", realm: "r"}},
		{name: "not digest", in: `Basic dXNlcjpwYXNz`, err: true},
		{name: "no parameters", in: `Digest`, err: true},
		{name: "unterminated quote", in: `Digest username="u`, err: true},
		{name: "duplicate", in: `Digest username="u", username="v"`, err: true},
		{name: "no =", in: `Digest username`, err: true},
		{name: "too many", in: "Digest " + strings.Repeat("a=b, ", maxAuthParams+1), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCredentials(tc.in)
			if tc.err {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestDigestAuth_Nonce(t *testing.T) {
	a := newDigestAuth("mds-1", []byte("k1"), []string{"SHA-256", "MD5"})
	now := time.Now()
	n := a.nonce(now)
	for _, tc := range []struct {
		name        string
		nonce       string
		at          time.Time
		ours, fresh bool
	}{
		{"fresh", n, now.Add(time.Second), true, true},
		{"at the end of its life", n, now.Add(defaultNonceTTL), true, true},
		{"stale", n, now.Add(defaultNonceTTL + time.Second), true, false},
		{"from the future", n, now.Add(-2 * time.Second), true, false},
		{"another key", newDigestAuth("mds-1", []byte("k2"), nil).nonce(now), now, false, false},
		{"another realm", newDigestAuth("mds-2", []byte("k1"), nil).nonce(now), now, false, false},
		{"one bit flipped", flip(n), now, false, false},
		{"too short", n[:10], now, false, false},
		{"not base64", strings.Repeat("!", len(n)), now, false, false},
		{"empty", "", now, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, fresh := a.checkNonce(tc.nonce, tc.at)
			if ours != tc.ours || fresh != tc.fresh {
				t.Fatalf("checkNonce = %v, %v; want %v, %v", ours, fresh, tc.ours, tc.fresh)
			}
		})
	}
	if a.nonce(now) == a.nonce(now.Add(time.Nanosecond)) {
		t.Fatal("two nonces alike")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

func TestCredentials_Matches(t *testing.T) {
	// RFC 7616 section 3.9.1 uses HTTP, so check against the independent
	// implementation of the tests instead, for both algorithms.
	for _, alg := range []string{"MD5", "SHA-256"} {
		c := credentials{username: "xivo", realm: "mds-1", nonce: "n", uri: "sip:h", algorithm: alg, qop: "auth", nc: "00000001", cnonce: "c"}
		c.response = strings.ToUpper(digestResponse(alg, "xivo", "mds-1", "pw", "REGISTER", "sip:h", "n", "00000001", "c", "auth"))
		if !c.matches("REGISTER", "pw") {
			t.Errorf("%s: right password refused", alg)
		}
		if c.matches("REGISTER", "pw2") || c.matches("INVITE", "pw") {
			t.Errorf("%s: wrong password or method accepted", alg)
		}
	}
}

// TestFuzzSeeds makes sure the fuzz seeds do what FuzzHandle assumes:
// the authenticated ones bind or unbind, the others do not.
func TestFuzzSeeds(t *testing.T) {
	r := newFuzzRegistrar(t)
	bind, resp := fuzzRequest(r, "SHA-256", 1, nil)
	if res := parseResponse(t, r.handle([]byte(bind), fuzzSrc, "UDP"), len(bind)); res == nil || res.StatusCode != 200 || len(r.Bindings()) != 1 {
		t.Fatalf("SHA-256 seed: %v, bindings %+v", res, r.Bindings())
	}
	bad := strings.Replace(bind, resp, strings.Repeat("0", len(resp)), 1)
	if res := parseResponse(t, r.handle([]byte(bad), fuzzSrc, "UDP"), len(bad)); res == nil || res.StatusCode != 403 {
		t.Fatalf("seed with a wrong response: %v, want 403", res)
	}
	unbind, _ := fuzzRequest(r, "MD5", 2, func(m *rawRequest) { m.expires = "0" })
	if res := parseResponse(t, r.handle([]byte(unbind), fuzzSrc, "UDP"), len(unbind)); res == nil || res.StatusCode != 200 || len(r.Bindings()) != 0 {
		t.Fatalf("MD5 unbind seed: %v, bindings %+v", res, r.Bindings())
	}
}
