package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProxy_Cuts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer srv.Close()
	p, err := Start(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func(path string) (string, error) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(p.URL() + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	tests := []struct {
		name   string
		setup  func()
		path   string
		wantOK bool
	}{
		{"passes", func() {}, "/api/v1/status", true},
		{"path cut", func() { p.CutPaths("/api/v1/events") }, "/api/v1/events", false},
		{"other paths pass", func() {}, "/api/v1/status", true},
		{"all cut", func() { p.CutAll(true) }, "/api/v1/status", false},
		{"restored", func() { p.CutAll(false); p.CutPaths() }, "/api/v1/events", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			body, err := get(tt.path)
			if ok := err == nil && body == "hello "+tt.path; ok != tt.wantOK {
				t.Fatalf("GET %s: %q %v, want ok=%v", tt.path, body, err, tt.wantOK)
			}
		})
	}
}
