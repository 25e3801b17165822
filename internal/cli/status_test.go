package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Each kind's status is printed as that kind's: an edge's routes and an
// mds's bindings, not an empty xivo status.
func TestRun_StatusOfEachKind(t *testing.T) {
	for _, tc := range []struct {
		kind, body string
		want       []string
	}{
		{"edge", `{"name":"edge","kind":"edge","revision":3,"tls":false,"switches":1,
			"routes":[{"name":"xivo","kind":"http","chosen":"xivo-standby-xivo","since":"2026-12-01T10:00:00Z","reason":"xivo-standby-xivo usable",
				"backends":[{"name":"xivo-main-xivo","side":"main","node":"xivo-main","address":"127.0.0.2:80","health":"down","usable":false,"why":"node xivo-main is inactive","sessions":0},
					{"name":"xivo-standby-xivo","side":"standby","node":"xivo-standby","address":"127.0.0.3:80","health":"up","usable":true,"sessions":4}]}],
			"nodes":[{"name":"xivo-main","reachable":false,"error":"connection refused"},{"name":"xivo-standby","reachable":true,"status":"active","epoch":2,"via":"events","observed_at":"2026-12-01T10:00:00Z"}]}`,
			[]string{"edge (edge), 1 switches", "Route xivo (http /): xivo-standby-xivo since", "not usable: node xivo-main is inactive", "4 sessions", "xivo-main unreachable: connection refused", "xivo-standby active, epoch 2 (via events"}},
		{"mds", `{"name":"mds-1","kind":"mds","revision":2,"since":"2026-12-01T10:00:00Z","listen":{"udp":"127.0.0.11:5060"},"warnings":[],
			"bindings":[{"aor":"sip:trunk@mds","contact":"sip:trunk@127.0.0.3:5060","node":"xivo-standby","source":"127.0.0.3:5060","transport":"UDP","since":"2026-12-01T10:00:00Z","expires":"2026-12-01T10:02:00Z"}]}`,
			[]string{"mds-1 (mds), registrar on udp 127.0.0.11:5060 tcp -", "sip:trunk@mds", "sip:trunk@127.0.0.3:5060", "xivo-standby"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			code, out, errOut := run(t, "", "status", "--node", srv.URL)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("status lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "epoch 0") || strings.Contains(out, "never ago") {
				t.Errorf("printed as a xivo status:\n%s", out)
			}
			code, out, _ = run(t, "", "status", "--node", srv.URL, "--json")
			if code != 0 || !strings.Contains(out, `"kind": "`+tc.kind+`"`) || !strings.Contains(out, `"bindings"`) && tc.kind == "mds" {
				t.Errorf("--json: exit %d\n%s", code, out)
			}
		})
	}
}
