package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/xivo-resilience/resilience/internal/auth"
)

// fixedAuth knows one caller, by the value of a header.
type fixedAuth struct {
	header, value string
	p             auth.Principal
}

func (f fixedAuth) Authenticate(r *http.Request) (auth.Principal, bool) {
	if r.Header.Get(f.header) != f.value {
		return auth.Principal{}, false
	}
	return f.p, true
}

func TestChain_Authenticate(t *testing.T) {
	first := fixedAuth{"A", "1", auth.Principal{Name: "first", Scope: auth.ScopeOperate}}
	second := fixedAuth{"B", "1", auth.Principal{Name: "second", Scope: auth.ScopeRead}}
	chain := Chain{first, second}
	tests := []struct {
		name    string
		headers map[string]string
		want    string
		ok      bool
	}{
		{name: "nobody", ok: false},
		{name: "first only", headers: map[string]string{"A": "1"}, want: "first", ok: true},
		{name: "second only", headers: map[string]string{"B": "1"}, want: "second", ok: true},
		{name: "both: the first wins", headers: map[string]string{"A": "1", "B": "1"}, want: "first", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/status", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			p, ok := chain.Authenticate(r)
			if ok != tt.ok || p.Name != tt.want {
				t.Fatalf("got %q %v, want %q %v", p.Name, ok, tt.want, tt.ok)
			}
		})
	}
	if _, ok := (Chain{}).Authenticate(httptest.NewRequest("GET", "/", nil)); ok {
		t.Fatal("an empty chain authenticated someone")
	}
}
