package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/xivo-resilience/resilience/internal/store"
)

// fakeStatus is the status JSON of an mds or edge node.
type fakeStatus struct {
	mu sync.Mutex
	b  []byte
}

func (f *fakeStatus) Encoded() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b
}

func (f *fakeStatus) set(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.b = []byte(s)
}

const mdsStatusJSON = `{"name":"mds-1","kind":"mds","revision":3,
"bindings":[{"aor":"xivo","contact":"sip:xivo@10.0.0.1:5060","node":"xivo-main","source":"10.0.0.1:5060","transport":"udp","since":"2026-05-04T08:59:00Z","expires":"2026-05-04T09:59:00Z"},
{"aor":"xivo","contact":"sip:xivo@10.0.0.2:5060","node":"xivo-standby","source":"10.0.0.2:5060","transport":"tcp","since":"2026-05-04T08:59:30Z","expires":"2026-05-04T09:59:30Z"}],
"alarm":"two XiVO nodes bound at once: xivo-main and xivo-standby",
"warnings":[{"code":"two_xivo_bound","message":"two XiVO nodes bound at once: xivo-main and xivo-standby"}],
"since":"2026-05-04T09:00:00Z","listen":{"udp":"0.0.0.0:5060","tcp":"0.0.0.0:5061"}}`

const edgeStatusJSON = `{"name":"edge-1","kind":"edge","revision":2,"http":"0.0.0.0:8443","tls":true,"switches":1,
"routes":[{"name":"web","kind":"http","host":"xivo.example","path_prefix":"/","chosen":"main-web","since":"2026-05-04T08:00:00Z","reason":"xivo-main is active at epoch 2",
  "backends":[{"name":"main-web","side":"main","node":"xivo-main","address":"10.0.0.1:443","node_status":"active","epoch":2,"health":"up","usable":true},
              {"name":"standby-web","side":"standby","node":"xivo-standby","address":"10.0.0.2:443","node_status":"inactive","epoch":1,"health":"down","health_error":"connection refused","why":"node inactive"}]},
 {"name":"sip","kind":"sip","listen":"0.0.0.0:5060","chosen":"","reason":"no backend usable",
  "backends":[{"name":"main-sip","side":"main","node":"xivo-main","address":"10.0.0.1:5060","health":"none","why":"node unreachable"}]}],
"nodes":[{"name":"xivo-main","reachable":true,"status":"active","epoch":2,"via":"events","observed_at":"2026-05-04T09:00:00Z"},
         {"name":"xivo-standby","reachable":false,"error":"dial tcp: connection refused"}]}`

// newStatusFixture serves the status page of an mds or edge node.
func newStatusFixture(t *testing.T, kind, name string, src StatusSource) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := newFakeClock()
	w, err := NewStatusPage(StatusOptions{Name: name, Kind: kind, Status: src, History: st, Users: testUsers(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return &fixture{srv: srv, web: w, st: st, clock: clock}
}

func TestStatusPage_MDS(t *testing.T) {
	src := &fakeStatus{}
	src.set(mdsStatusJSON)
	f := newStatusFixture(t, "mds", "mds-1", src)
	if _, err := f.st.Write(nil, store.Entry{Actor: "xivo-standby", Remote: "10.0.0.2:5060", Action: "bind", Result: "bound",
		Message: "xivo-standby bound sip:xivo@10.0.0.2:5060 for xivo"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)

	resp := b.get("/")
	wantStatus(t, resp, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("unauthenticated GET / went to %q, want /login", loc)
	}

	b.login("viewer", viewerPassword)
	wantBody(t, b, "Services", "Media server", "Registrar", `id="registrar"`,
		"0.0.0.0:5060", "0.0.0.0:5061",
		`<tr data-aor="xivo" data-node="xivo-main">`, "sip:xivo@10.0.0.1:5060", "xivo-standby",
		`class="alert alert-bad" id="mds-alarm"`, "two XiVO nodes bound at once: xivo-main and xivo-standby",
		`data-action="bind" data-result="bound"`, "xivo-standby bound sip:xivo@10.0.0.2:5060 for xivo",
		`<meta http-equiv="refresh" content="5">`, `class="dot tone-bad" id="node-dot"`)
	if strings.Contains(b.last, "Start services") || strings.Contains(b.last, "IPBX") {
		t.Fatalf("the mds page shows xivo parts:\n%s", b.last)
	}

	src.set(strings.Replace(mdsStatusJSON, `"alarm":"two XiVO nodes bound at once: xivo-main and xivo-standby",`, "", 1))
	wantStatus(t, b.do("GET", "/partials/live", nil, map[string]string{BackgroundHeader: "1"}), http.StatusOK)
	if strings.Contains(b.last, "mds-alarm") || !strings.Contains(b.last, `id="bindings"`) {
		t.Fatalf("live fragment without the alarm:\n%s", b.last)
	}

	wantStatus(t, b.get("/history"), http.StatusOK)
	wantBody(t, b, "Registrar", "History", "xivo-standby bound")
	wantStatus(t, b.get("/services/start"), http.StatusNotFound)
}

func TestStatusPage_Edge(t *testing.T) {
	src := &fakeStatus{}
	f := newStatusFixture(t, "edge", "edge-1", src)
	b := f.browser(t)
	resp := b.get("/")
	wantStatus(t, resp, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("unauthenticated GET / went to %q, want /login", loc)
	}

	b.login("admin", adminPassword)
	wantBody(t, b, "Edge", "Routes", "cannot be read: no status yet")

	src.set(edgeStatusJSON)
	wantStatus(t, b.get("/"), http.StatusOK)
	wantBody(t, b, "Services", "Edge", "Routes",
		`<tr data-route="web" data-chosen="main-web">`, `<span class="pill tone-ok">main-web</span>`,
		`<tr data-route="sip" data-chosen="">`, "none: maintenance page",
		`<li data-backend="standby-web">`, "connection refused", "epoch 2",
		`<span class="pill pill-sm tone-ok">up</span>`, `<span class="pill pill-sm tone-bad">down</span>`,
		`<tr data-node="xivo-standby">`, "dial tcp: connection refused", "0.0.0.0:8443 (TLS)",
		`class="dot tone-warn" id="node-dot"`)

	tok := csrfMeta.FindStringSubmatch(b.last)[1]
	resp = b.do("POST", "/logout", map[string][]string{"csrf": {tok}}, map[string]string{"Origin": f.srv.URL})
	wantStatus(t, resp, http.StatusSeeOther)
	wantStatus(t, b.get("/"), http.StatusSeeOther)
}

func TestStatusPage_Options(t *testing.T) {
	users := testUsers(t)
	for _, o := range []StatusOptions{
		{},
		{Name: "x", Kind: "xivo", Status: &fakeStatus{}, History: fakeHistory{}, Users: users},
		{Kind: "mds", Status: &fakeStatus{}, History: fakeHistory{}, Users: users},
		{Name: "x", Kind: "edge", History: fakeHistory{}, Users: users},
	} {
		if _, err := NewStatusPage(o); err == nil {
			t.Errorf("NewStatusPage(%+v) succeeded", o)
		}
	}
}

type fakeHistory struct{}

func (fakeHistory) History(int, uint64) ([]store.Entry, error) { return nil, nil }
