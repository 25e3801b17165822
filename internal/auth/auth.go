// Package auth knows who may use an agent: machines by bearer token
// (stored as SHA-256 hashes: tokens are random, so a fast hash is enough and
// keeps a status request cheap) and people by password (bcrypt).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/xivo-resilience/resilience/internal/config"
	"golang.org/x/crypto/bcrypt"
)

// Scope is what a caller may do.
type Scope string

// Scopes: read sees everything; operate may also start and stop.
const (
	ScopeRead    Scope = "read"
	ScopeOperate Scope = "operate"
)

// Allows tells whether s covers need.
func (s Scope) Allows(need Scope) bool { return s == ScopeOperate || s == need }

// Principal is an authenticated caller.
type Principal struct {
	Name  string
	Scope Scope
}

// ErrBadCredentials is returned for an unknown user or a wrong password,
// without saying which.
var ErrBadCredentials = errors.New("wrong user name or password")

// Tokens checks bearer tokens.
type Tokens struct {
	byHash map[[sha256.Size]byte]Principal
}

// NewTokens indexes the configured token hashes.
func NewTokens(tokens []config.Token) (*Tokens, error) {
	t := &Tokens{byHash: make(map[[sha256.Size]byte]Principal, len(tokens))}
	for _, tok := range tokens {
		hexSum, ok := strings.CutPrefix(tok.Hash, "sha256:")
		b, err := hex.DecodeString(hexSum)
		if !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("token %s: hash must be sha256: and 64 hex digits", tok.Name)
		}
		t.byHash[[sha256.Size]byte(b)] = Principal{Name: tok.Name, Scope: Scope(tok.Scope)}
	}
	return t, nil
}

// Lookup returns the token's owner. Only the hash of the token is compared,
// so the lookup leaks nothing usable about stored tokens through timing.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	if token == "" {
		return Principal{}, false
	}
	p, ok := t.byHash[sha256.Sum256([]byte(token))]
	return p, ok
}

// HashToken returns the form a token is stored in the config.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewToken returns a random token of 256 bits.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// User is a person allowed to log in.
type User struct {
	Name string
	// Role is "admin" or "viewer".
	Role string
	hash []byte
}

// Scope returns what the user's role allows.
func (u User) Scope() Scope {
	if u.Role == "admin" {
		return ScopeOperate
	}
	return ScopeRead
}

// Users checks passwords.
type Users struct {
	byName map[string]User
	// dummy is compared against for unknown users, so that a wrong name
	// takes as long as a wrong password.
	dummy []byte
}

// NewUsers indexes the configured users.
func NewUsers(users []config.User) (*Users, error) {
	u := &Users{byName: make(map[string]User, len(users))}
	for _, c := range users {
		if _, err := bcrypt.Cost([]byte(c.PasswordHash)); err != nil {
			return nil, fmt.Errorf("user %s: password_hash: %w", c.Name, err)
		}
		u.byName[c.Name] = User{Name: c.Name, Role: c.Role, hash: []byte(c.PasswordHash)}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("dummy password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	u.dummy = dummy
	return u, nil
}

// Check verifies a password.
func (u *Users) Check(name, password string) (User, error) {
	user, ok := u.byName[name]
	hash := user.hash
	if !ok {
		hash = u.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if !ok || err != nil {
		return User{}, ErrBadCredentials
	}
	return user, nil
}

// HashPassword returns a bcrypt hash for the config.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("password too short: use at least 8 characters")
	}
	if len(password) > 72 {
		return "", errors.New("password too long: bcrypt uses at most 72 bytes")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), 12)
	return string(h), err
}

// Equal compares two secrets in constant time.
func Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
