package trunk

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// challenge is a digest challenge from a 401 or 407, kept for the answers
// of one exchange so the nonce count grows as RFC 7616 asks.
//
// sipgo has a DoDigestAuth helper on top of github.com/icholy/digest, but it
// reads only the first WWW-Authenticate header, hashes the Request-URI
// without its parameters (";transport=tcp" would then not match what the
// registrar checks) and always sends nc=00000001. We use icholy/digest for
// the hashing (MD5, SHA-256, qop=auth) and pick the challenge ourselves.
type challenge struct {
	header string // Authorization or Proxy-Authorization
	chal   *digest.Challenge
	stale  bool
	count  int
}

// algorithmRank orders the algorithms we can answer, strongest last; RFC
// 8760 lets a registrar offer several challenges, one per algorithm.
var algorithmRank = map[string]int{"MD5": 1, "SHA-256": 2, "SHA-512-256": 3}

// parseChallenge picks the strongest digest challenge of a 401 (WWW-
// Authenticate) or 407 (Proxy-Authenticate) that we can answer.
func parseChallenge(res *sip.Response) (*challenge, error) {
	in, out := "WWW-Authenticate", "Authorization"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		in, out = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var best *digest.Challenge
	var offered []string
	for _, h := range res.GetHeaders(in) {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil {
			offered = append(offered, strings.SplitN(h.Value(), " ", 2)[0])
			continue
		}
		ch.Algorithm = strings.ToUpper(strings.TrimSpace(ch.Algorithm))
		// icholy/digest splits qop="auth, auth-int" without trimming.
		for i, q := range ch.QOP {
			ch.QOP[i] = strings.TrimSpace(q)
		}
		alg := algorithmOf(ch)
		offered = append(offered, alg)
		if algorithmRank[alg] == 0 || !digest.CanDigest(ch) {
			continue
		}
		if best == nil || algorithmRank[alg] > algorithmRank[algorithmOf(best)] {
			best = ch
		}
	}
	if best == nil {
		if len(offered) == 0 {
			return nil, fmt.Errorf("%s without %s header", statusLine(res), in)
		}
		return nil, fmt.Errorf("%s: no supported digest challenge (offered %s)", statusLine(res), strings.Join(offered, ", "))
	}
	return &challenge{header: out, chal: best, stale: best.Stale}, nil
}

// algorithmOf names a challenge's algorithm; RFC 7616 3.3: absent means
// MD5. The challenge itself is left as sent, so the answer echoes it.
func algorithmOf(ch *digest.Challenge) string {
	if ch.Algorithm == "" {
		return "MD5"
	}
	return ch.Algorithm
}

// answer computes the credentials header for one more request under this
// challenge. uri must be the Request-URI exactly as sent.
func (c *challenge) answer(method, uri, user, password string) (name, value string, err error) {
	if c == nil {
		return "", "", errors.New("no challenge")
	}
	c.count++
	cred, err := digest.Digest(c.chal, digest.Options{
		Method:   method,
		URI:      uri,
		Username: user,
		Password: password,
		Count:    c.count,
	})
	if err != nil {
		return "", "", err
	}
	return c.header, cred.String(), nil
}
