package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
)

// session is one logged-in user. The store hands out copies.
type session struct {
	user    string
	role    string
	scope   auth.Scope
	csrf    string
	created time.Time
	seen    time.Time
	// flash is the message of the last action, shown once by the next
	// page (POST, redirect, GET).
	flash *flash
}

func (s *session) admin() bool { return s.scope == auth.ScopeOperate }

// flash is a one-time message at the top of a page.
type flash struct {
	// Kind is ok, info, warn or error.
	Kind string
	Text string
}

// sessions keeps sessions in memory, keyed by the SHA-256 of their ID: the
// map holds nothing a reader of memory could put in a cookie. Expired
// sessions are dropped when met and swept when the store is full, so the
// store needs no goroutine of its own.
type sessions struct {
	idle, maxAge time.Duration
	limit        int
	now          func() time.Time

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

func newSessions(idle, maxAge time.Duration, limit int, now func() time.Time) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, limit: limit, now: now, byID: map[[sha256.Size]byte]*session{}}
}

// randomToken returns 256 random bits, base64url encoded.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(id string) [sha256.Size]byte { return sha256.Sum256([]byte(id)) }

// create opens a session for user and returns its ID, the cookie value.
// A full store first drops expired sessions, then the least recently used.
func (s *sessions) create(user auth.User) (string, session) {
	now := s.now()
	id := randomToken()
	sess := &session{user: user.Name, role: user.Role, scope: user.Scope(), csrf: randomToken(), created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.limit {
		s.sweepLocked(now)
	}
	for len(s.byID) >= s.limit {
		var oldest [sha256.Size]byte
		first := true
		for k, v := range s.byID {
			if first || v.seen.Before(s.byID[oldest].seen) {
				oldest, first = k, false
			}
		}
		delete(s.byID, oldest)
	}
	s.byID[sessionKey(id)] = sess
	return id, *sess
}

// get returns the live session with that ID; touch counts the request as
// activity, which postpones the idle expiry.
func (s *sessions) get(id string, touch bool) (session, bool) {
	if id == "" {
		return session{}, false
	}
	now := s.now()
	k := sessionKey(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[k]
	if !ok {
		return session{}, false
	}
	if s.expired(sess, now) {
		delete(s.byID, k)
		return session{}, false
	}
	if touch {
		sess.seen = now
	}
	return *sess, true
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.seen) >= s.idle || now.Sub(sess.created) >= s.maxAge
}

// delete ends a session (logout).
func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sessionKey(id))
}

// setFlash keeps a message for the session's next page.
func (s *sessions) setFlash(id string, f flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[sessionKey(id)]; ok {
		sess.flash = &f
	}
}

// popFlash returns the session's message once.
func (s *sessions) popFlash(id string) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[sessionKey(id)]
	if !ok {
		return nil
	}
	f := sess.flash
	sess.flash = nil
	return f
}

// len counts the sessions held, expired ones included.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, v := range s.byID {
		if s.expired(v, now) {
			delete(s.byID, k)
		}
	}
}
