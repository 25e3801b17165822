package mds

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"time"
)

// defaultNonceTTL is how long a nonce may be answered. Short, because
// digest protects neither the Contact nor the CSeq of a request: a captured
// Authorization can be replayed with other headers for as long as its
// nonce lives. A client that answers late gets stale=true and simply
// computes a new response, without its password being in doubt.
const defaultNonceTTL = 60 * time.Second

// digestAuth issues and checks RFC 7616 / RFC 8760 digest challenges.
//
// Nonces are stateless: base64url(8-byte issue time in Unix nanoseconds ||
// first 16 bytes of HMAC-SHA-256(key, issue time || realm)). Checking one
// needs only the key, so challenges cost no memory, however many a
// flood of unauthenticated REGISTERs asks for, and a restart only turns
// outstanding nonces stale (the key is random per process). The price is
// that a nonce is not single-use: replay is bounded by its lifetime, not
// prevented (nc is checked for form, not tracked).
type digestAuth struct {
	realm string
	key   []byte
	ttl   time.Duration
	algs  []string // offered, most preferred first
}

func newDigestAuth(realm string, key []byte, algs []string) *digestAuth {
	return &digestAuth{realm: realm, key: key, ttl: defaultNonceTTL, algs: algs}
}

// offers reports whether credentials computed with alg are accepted:
// only what was offered, so that a deployment that turned MD5 off cannot
// be answered with MD5. An absent algorithm is MD5 (RFC 2617).
func (a *digestAuth) offers(alg string) bool {
	if alg == "" {
		alg = "MD5"
	}
	for _, o := range a.algs {
		if strings.EqualFold(o, alg) {
			return true
		}
	}
	return false
}

const nonceRawLen = 8 + 16

func (a *digestAuth) nonce(now time.Time) string {
	var b [nonceRawLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	copy(b[8:], a.mac(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (a *digestAuth) mac(ts []byte) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write(ts)
	m.Write([]byte(a.realm))
	return m.Sum(nil)[:16]
}

// checkNonce reports whether s is a nonce of ours, and if so whether it is
// still fresh.
func (a *digestAuth) checkNonce(s string, now time.Time) (ours, fresh bool) {
	if len(s) != base64.RawURLEncoding.EncodedLen(nonceRawLen) {
		return false, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != nonceRawLen {
		return false, false
	}
	if !hmac.Equal(b[8:], a.mac(b[:8])) {
		return false, false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])))
	age := now.Sub(issued)
	// A nonce from the future is ours only if the clock stepped back;
	// accept a second of it, not more.
	return true, age >= -time.Second && age <= a.ttl
}

// challenges are the WWW-Authenticate values of a 401, one per offered
// algorithm in order of preference (RFC 8760 section 2.4: a client uses
// the topmost it supports); all share one nonce.
func (a *digestAuth) challenges(now time.Time, stale bool) []string {
	n := a.nonce(now)
	var out []string
	for _, alg := range a.algs {
		v := `Digest realm="` + a.realm + `", nonce="` + n + `", algorithm=` + alg + `, qop="auth"`
		if stale {
			v += ", stale=true"
		}
		out = append(out, v)
	}
	return out
}

// credentials are the parameters of a Digest Authorization header.
type credentials struct {
	username, realm, nonce, uri, response string
	algorithm, qop, nc, cnonce            string
}

var errBadCredentials = errors.New("malformed digest credentials")

// maxAuthParams bounds the parameters read from one header; a real client
// sends about ten.
const maxAuthParams = 20

// parseCredentials parses `Digest k=v, k="quoted", ...` (RFC 7616 section
// 3.4). Unknown parameters are ignored, duplicates are an error (they
// would let two parts of a stack disagree on what was authenticated).
func parseCredentials(v string) (credentials, error) {
	var c credentials
	scheme, rest, ok := strings.Cut(strings.TrimLeft(v, " \t"), " ")
	if !ok || !strings.EqualFold(scheme, "Digest") {
		return c, errBadCredentials
	}
	seen := map[string]bool{}
	for n := 0; ; n++ {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		if n == maxAuthParams {
			return c, errBadCredentials
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c, errBadCredentials
		}
		name := strings.ToLower(strings.TrimRight(rest[:eq], " \t"))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return c, errBadCredentials // unterminated quoted string
			}
			val, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexAny(rest, ", \t")
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		if seen[name] {
			return c, errBadCredentials
		}
		seen[name] = true
		switch name {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "algorithm":
			c.algorithm = val
		case "qop":
			c.qop = val
		case "nc":
			c.nc = val
		case "cnonce":
			c.cnonce = val
		}
	}
	return c, nil
}

// hasherFor returns the hash of a digest algorithm name; "" is MD5 (RFC
// 2617). The -sess variants are not offered, so not accepted.
func hasherFor(alg string) func() hash.Hash {
	switch strings.ToUpper(alg) {
	case "", "MD5":
		return md5.New
	case "SHA-256":
		return sha256.New
	}
	return nil
}

// validForm checks what can be checked without the password: we offered
// qop=auth only, so qop, nc (8 hex digits) and cnonce must be there.
func (c credentials) validForm() bool {
	if c.username == "" || c.nonce == "" || c.uri == "" || c.response == "" || c.cnonce == "" {
		return false
	}
	if !strings.EqualFold(c.qop, "auth") || len(c.nc) != 8 {
		return false
	}
	if _, err := hex.DecodeString(c.nc); err != nil {
		return false
	}
	return hasherFor(c.algorithm) != nil
}

// expected computes the response a client knowing password would send
// for method (RFC 7616 section 3.4.1, qop=auth).
func (c credentials) expected(method, password string) string {
	newHash := hasherFor(c.algorithm)
	h := func(parts ...string) string {
		x := newHash()
		for i, p := range parts {
			if i > 0 {
				x.Write([]byte{':'})
			}
			x.Write([]byte(p))
		}
		return hex.EncodeToString(x.Sum(nil))
	}
	ha1 := h(c.username, c.realm, password)
	ha2 := h(method, c.uri)
	return h(ha1, c.nonce, c.nc, c.cnonce, c.qop, ha2)
}

// matches compares a response in constant time; hex is case-insensitive.
func (c credentials) matches(method, password string) bool {
	want := c.expected(method, password)
	got := strings.ToLower(c.response)
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
