package web

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
)

var (
	admin  = auth.User{Name: "admin", Role: "admin"}
	viewer = auth.User{Name: "viewer", Role: "viewer"}
)

func TestSessions_Create(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(30*time.Minute, 12*time.Hour, 10, clock.Now)
	id, sess := s.create(admin)

	t.Run("the ID is 256 random bits", func(t *testing.T) {
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(b) != 32 {
			t.Fatalf("id %q: %d bytes, %v", id, len(b), err)
		}
		other, _ := s.create(admin)
		if other == id {
			t.Fatal("two sessions got the same ID")
		}
	})
	t.Run("the store keeps the hash of the ID, not the ID", func(t *testing.T) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.byID[sha256.Sum256([]byte(id))]; !ok {
			t.Fatal("no entry under the SHA-256 of the ID")
		}
		for k := range s.byID {
			if string(k[:]) == id || base64.RawURLEncoding.EncodeToString(k[:]) == id {
				t.Fatal("the raw ID is a key")
			}
		}
	})
	t.Run("the session has a role, a scope and its own CSRF token", func(t *testing.T) {
		if sess.user != "admin" || sess.scope != auth.ScopeOperate || !sess.admin() {
			t.Fatalf("session %+v", sess)
		}
		if b, err := base64.RawURLEncoding.DecodeString(sess.csrf); err != nil || len(b) != 32 {
			t.Fatalf("csrf %q", sess.csrf)
		}
		_, v := s.create(viewer)
		if v.scope != auth.ScopeRead || v.admin() || v.csrf == sess.csrf {
			t.Fatalf("viewer session %+v", v)
		}
	})
	t.Run("unknown and empty IDs find nothing", func(t *testing.T) {
		for _, bad := range []string{"", "nope", id + "x"} {
			if _, ok := s.get(bad, true); ok {
				t.Errorf("get(%q) found a session", bad)
			}
		}
	})
}

func TestSessions_Expiry(t *testing.T) {
	tests := []struct {
		name string
		// steps: wait, then get with touch
		steps []time.Duration
		touch bool
		alive bool
	}{
		{name: "used within the idle timeout", steps: []time.Duration{29 * time.Minute}, touch: true, alive: true},
		{name: "idle for the idle timeout", steps: []time.Duration{30 * time.Minute}, touch: true, alive: false},
		{name: "used every 20 minutes for 11 hours", steps: repeat(20*time.Minute, 33), touch: true, alive: true},
		{name: "used every 20 minutes for 12 hours: the absolute age ends it", steps: repeat(20*time.Minute, 36), touch: true, alive: false},
		{name: "background requests do not keep it alive", steps: []time.Duration{20 * time.Minute, 20 * time.Minute}, touch: false, alive: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newSessions(30*time.Minute, 12*time.Hour, 10, clock.Now)
			id, _ := s.create(admin)
			alive := true
			for _, d := range tt.steps {
				clock.Add(d)
				if _, alive = s.get(id, tt.touch); !alive {
					break
				}
			}
			if alive != tt.alive {
				t.Fatalf("alive = %v, want %v", alive, tt.alive)
			}
			if !alive && s.len() != 0 {
				t.Fatal("an expired session is still held")
			}
		})
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestSessions_DeleteAndFlash(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(30*time.Minute, 12*time.Hour, 10, clock.Now)
	id, _ := s.create(admin)
	s.setFlash(id, flash{Kind: "ok", Text: "done"})
	if f := s.popFlash(id); f == nil || f.Text != "done" {
		t.Fatalf("flash %+v", f)
	}
	if f := s.popFlash(id); f != nil {
		t.Fatalf("flash shown twice: %+v", f)
	}
	s.delete(id)
	if _, ok := s.get(id, true); ok {
		t.Fatal("session alive after delete")
	}
}

func TestSessions_Limit(t *testing.T) {
	clock := newFakeClock()
	s := newSessions(30*time.Minute, 12*time.Hour, 3, clock.Now)
	var ids []string
	for range 3 {
		id, _ := s.create(admin)
		ids = append(ids, id)
		clock.Add(time.Minute)
	}
	s.get(ids[0], true) // the first is now the most recently used
	clock.Add(time.Minute)
	s.create(admin)
	if s.len() != 3 {
		t.Fatalf("%d sessions held, want 3", s.len())
	}
	if _, ok := s.get(ids[1], false); ok {
		t.Fatal("the least recently used session was kept")
	}
	for _, i := range []int{0, 2} {
		if _, ok := s.get(ids[i], false); !ok {
			t.Fatalf("session %d was dropped", i)
		}
	}
	t.Run("expired sessions go first", func(t *testing.T) {
		clock.Add(31 * time.Minute) // every session idle now
		s.create(admin)
		if s.len() != 1 {
			t.Fatalf("%d sessions held, want 1", s.len())
		}
	})
}

func TestCookieNames(t *testing.T) {
	tests := []struct {
		name, node     string
		secure         bool
		session, login string
	}{
		{name: "plain HTTP", node: "xivo-main", session: "resilience-session-xivo-main", login: "resilience-login-xivo-main"},
		{name: "TLS uses the __Host- prefix", node: "xivo-main", secure: true, session: "__Host-resilience-session-xivo-main", login: "__Host-resilience-login-xivo-main"},
		{name: "odd characters are replaced", node: "a b;c=d", session: "resilience-session-a_b_c_d", login: "resilience-login-a_b_c_d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, l := cookieNames(tt.node, tt.secure)
			if s != tt.session || l != tt.login {
				t.Fatalf("got %q %q", s, l)
			}
		})
	}
}
