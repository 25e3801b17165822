package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingUnit counts its starts and stops.
type countingUnit struct{ starts, stops atomic.Int32 }

func (u *countingUnit) Start(ctx context.Context) error { u.starts.Add(1); return nil }
func (u *countingUnit) Stop(ctx context.Context) error  { u.stops.Add(1); return nil }

const (
	operateToken = "operate-token-0123456789"
	readToken    = "read-token-0123456789abc"
)

type fixture struct {
	srv  *httptest.Server
	unit *countingUnit
	m    *node.Machine
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := &countingUnit{}
	m, err := node.New(node.Options{Name: "xivo-main", Kind: "xivo", Role: "main", Mode: "manual",
		Services: []node.Service{{Name: "asterisk", Unit: u}}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens([]config.Token{
		{Name: "ops", Hash: auth.HashToken(operateToken), Scope: "operate"},
		{Name: "cc-main", Hash: auth.HashToken(readToken), Scope: "read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Machine: m, History: st, Auth: BearerAuth{Tokens: tokens}, Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		m.Close(context.Background())
		st.Close()
	})
	return &fixture{srv: srv, unit: u, m: m}
}

func (f *fixture) do(t *testing.T, method, path, token, ctype, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["message"].(string)
	return c
}

func TestServer_BadRequests(t *testing.T) {
	f := newFixture(t)
	const js = "application/json"
	tests := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		code, message                          string
	}{
		{"no token", "POST", "/api/v1/services/start", "", js, `{}`, 401, "unauthorized", "bearer token"},
		{"wrong token", "POST", "/api/v1/services/start", "nope-nope-nope-nope", js, `{}`, 401, "unauthorized", ""},
		{"read token on start", "POST", "/api/v1/services/start", readToken, js, `{}`, 403, "forbidden", "needs operate"},
		{"read token on stop", "POST", "/api/v1/services/stop", readToken, js, `{}`, 403, "forbidden", ""},
		{"malformed JSON", "POST", "/api/v1/services/start", operateToken, js, `{"force":`, 400, "bad_json", "malformed JSON"},
		{"unknown field", "POST", "/api/v1/services/start", operateToken, js, `{"forse":true}`, 400, "bad_json", `unknown field "forse"`},
		{"wrong type", "POST", "/api/v1/services/start", operateToken, js, `{"force":"yes"}`, 400, "bad_json", "field force: must be bool"},
		{"two objects", "POST", "/api/v1/services/start", operateToken, js, `{} {}`, 400, "bad_json", "data after the object"},
		{"wrong content type", "POST", "/api/v1/services/start", operateToken, "text/plain", `{}`, 415, "unsupported_media_type", "application/json"},
		{"oversized body", "POST", "/api/v1/services/start", operateToken, js, `{"reason":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "body_too_large", "over"},
		{"reason too long", "POST", "/api/v1/services/stop", operateToken, js, `{"reason":"` + strings.Repeat("x", MaxReason+1) + `"}`, 400, "bad_json", "reason"},
		{"bad limit", "GET", "/api/v1/history?limit=0", readToken, "", "", 400, "bad_request", "limit"},
		{"unknown path", "GET", "/api/v1/nothing", readToken, "", "", 404, "not_found", "/api/v1/nothing"},
		{"wrong method", "GET", "/api/v1/services/start", operateToken, "", "", 405, "method_not_allowed", "use POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path, tt.token, tt.ctype, tt.body)
			if resp.StatusCode != tt.status || errCode(body) != tt.code || !strings.Contains(errMessage(body), tt.message) {
				t.Fatalf("got %d %q %q, want %d %q containing %q", resp.StatusCode, errCode(body), errMessage(body), tt.status, tt.code, tt.message)
			}
		})
	}
	if n := f.unit.starts.Load() + f.unit.stops.Load(); n != 0 {
		t.Fatalf("bad requests touched services %d times", n)
	}
	if s := f.m.Snapshot(); s.Status != node.Inactive || s.Epoch != 0 {
		t.Fatalf("bad requests changed the node: %s epoch %d", s.Status, s.Epoch)
	}
}

func TestServer_StartStopHistory(t *testing.T) {
	f := newFixture(t)
	resp, body := f.do(t, "POST", "/api/v1/services/start", operateToken, "application/json", `{"reason":"failover drill"}`)
	if resp.StatusCode != 200 || body["status"] != "active" || body["epoch"] != 1.0 {
		t.Fatalf("start: %d %v", resp.StatusCode, body)
	}
	resp, body = f.do(t, "GET", "/api/v1/status", readToken, "", "")
	if resp.StatusCode != 200 || body["status"] != "active" || body["name"] != "xivo-main" {
		t.Fatalf("status: %d %v", resp.StatusCode, body)
	}
	resp, _ = f.do(t, "GET", "/api/v1/active", "", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("active: %d, want 200", resp.StatusCode)
	}
	resp, _ = f.do(t, "POST", "/api/v1/services/stop", operateToken, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("stop with empty body: %d", resp.StatusCode)
	}
	resp, _ = f.do(t, "GET", "/api/v1/active", "", "", "")
	if resp.StatusCode != 503 {
		t.Fatalf("active when inactive: %d, want 503", resp.StatusCode)
	}
	resp, body = f.do(t, "GET", "/api/v1/history?limit=2", readToken, "", "")
	entries, _ := body["entries"].([]any)
	if resp.StatusCode != 200 || len(entries) != 2 {
		t.Fatalf("history: %d %v", resp.StatusCode, body)
	}
	newest := entries[0].(map[string]any)
	if newest["action"] != "stop" || newest["result"] != "ok" || newest["actor"] != "ops" || newest["remote"] != "127.0.0.1" {
		t.Fatalf("newest entry = %v", newest)
	}
}

func TestServer_Events(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	go f.m.StartServices(context.Background(), node.Request{Actor: "test"})
	var sawActive, sawHeartbeat bool
	deadline := time.After(5 * time.Second)
	for !sawActive || !sawHeartbeat {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			sawActive = sawActive || (strings.HasPrefix(l, "data: ") && strings.Contains(l, `"status":"active"`))
			sawHeartbeat = sawHeartbeat || l == ": heartbeat"
		case <-deadline:
			t.Fatalf("active event %v, heartbeat %v", sawActive, sawHeartbeat)
		}
	}
	resp.Body.Close()
	for range lines {
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"force":true,"reason":"x"}`, `{"force":1}`, `[]`, `{"a":`, `null`, `{"reason":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r StartRequest
		err := strictJSON(data, &r)
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
		if err == nil && len(r.Reason) > MaxReason {
			t.Fatalf("accepted a reason of %d characters", len(r.Reason))
		}
	})
}
