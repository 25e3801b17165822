package api

import (
	"net/http"

	"github.com/xivo-resilience/resilience/internal/auth"
)

// Chain is an Authenticator that asks each of its members in turn: the
// first that knows the caller wins. The agent chains bearer tokens (for
// machines) and web sessions (for people using the page).
type Chain []Authenticator

// Authenticate returns the first member's answer that authenticates r.
func (c Chain) Authenticate(r *http.Request) (auth.Principal, bool) {
	for _, a := range c {
		if p, ok := a.Authenticate(r); ok {
			return p, true
		}
	}
	return auth.Principal{}, false
}

var _ Authenticator = Chain(nil)
