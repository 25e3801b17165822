package auth

import (
	"errors"
	"testing"

	"github.com/xivo-resilience/resilience/internal/config"
	"golang.org/x/crypto/bcrypt"
)

func TestTokens_Lookup(t *testing.T) {
	tok := NewToken()
	ts, err := NewTokens([]config.Token{{Name: "cc-main", Hash: HashToken(tok), Scope: "read"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"right token", tok, true},
		{"wrong token", tok + "x", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := ts.Lookup(tt.token)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (p.Name != "cc-main" || p.Scope != ScopeRead) {
				t.Fatalf("principal = %+v", p)
			}
		})
	}
	if _, err := NewTokens([]config.Token{{Name: "x", Hash: "md5:abc"}}); err == nil {
		t.Fatal("bad hash accepted")
	}
}

func TestScope_Allows(t *testing.T) {
	if !ScopeOperate.Allows(ScopeRead) || !ScopeRead.Allows(ScopeRead) || ScopeRead.Allows(ScopeOperate) {
		t.Fatal("scope rules broken")
	}
}

func TestUsers_Check(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	us, err := NewUsers([]config.User{{Name: "admin", PasswordHash: string(h), Role: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := us.Check("admin", "correct horse"); err != nil || u.Scope() != ScopeOperate {
		t.Fatalf("good password: %+v %v", u, err)
	}
	for _, c := range [][2]string{{"admin", "wrong"}, {"nobody", "correct horse"}} {
		if _, err := us.Check(c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("%v: err = %v", c, err)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("short password hashed")
	}
}
