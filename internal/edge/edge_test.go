package edge

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

func TestEdge_Route(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	cc := startWeb(t, "127.0.0.4", "cc-main")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	ccm, ccs := newFakeNode("cc-main", node.Active, 1), newFakeNode("cc-standby", node.Inactive, 0)
	e, log, reg := startEdge(t, Options{
		Routes: []Route{
			webRoute(main, standby),
			{Name: "cc", Host: "cc.example.com", PathPrefix: "/xuc",
				Main:    Backend{Name: "cc-main-xuc", Node: "cc-main", Address: cc.addr},
				Standby: Backend{Name: "cc-standby-xuc", Node: "cc-standby", Address: refusingAddr(t, "127.0.0.5")}},
		},
		Nodes: nodes(xm, xs, ccm, ccs),
	})
	c := client()
	url := "http://" + e.HTTPAddr()

	t.Run("main active gets the traffic", func(t *testing.T) {
		a := do(t, c, "GET", url+"/index.html", "xivo.example.com", nil)
		if a.code != 200 || a.body != "main" {
			t.Fatalf("got %d %q, want 200 main", a.code, a.body)
		}
		if got := a.h.Get("X-Seen-Host"); got != "xivo.example.com" {
			t.Errorf("backend saw Host %q, want the client's", got)
		}
		if got := a.h.Get("X-Seen-Fwd-Host"); got != "xivo.example.com" {
			t.Errorf("X-Forwarded-Host %q", got)
		}
		if got := a.h.Get("X-Seen-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto %q", got)
		}
	})
	t.Run("a client's X-Forwarded-For is replaced", func(t *testing.T) {
		req, _ := http.NewRequest("GET", url+"/", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Seen-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want 127.0.0.1 only", got)
		}
	})
	t.Run("host and prefix pick the route", func(t *testing.T) {
		for _, tc := range []struct {
			name, host, path, want string
		}{
			{"cc host, its prefix", "cc.example.com", "/xuc/api", "cc-main"},
			{"cc host with port", "CC.example.com:443", "/xuc", "cc-main"},
			{"cc host, other path", "cc.example.com", "/other", "main"},
			{"prefix matches whole segments", "cc.example.com", "/xucmgt", "main"},
			{"other host", "xivo.example.com", "/xuc/api", "main"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if a := do(t, c, "GET", url+tc.path, tc.host, nil); a.body != tc.want {
					t.Errorf("got %d %q, want %q", a.code, a.body, tc.want)
				}
			})
		}
	})
	t.Run("metrics count requests by route, backend and code", func(t *testing.T) {
		got := counter(t, reg, "resilience_edge_requests_total", map[string]string{"route": "web", "backend": "main-web", "code": "200"})
		if got < 2 {
			t.Errorf("requests{web,main-web,200} = %v, want >= 2", got)
		}
	})
	if got := log.list(); !slices.Equal(got, []string{"web:>main-web", "cc:>cc-main-xuc"}) {
		t.Errorf("switches %v: want the two first choices", got)
	}
}

func TestEdge_Takeover(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 7), newFakeNode("xivo-standby", node.Inactive, 6)
	e, log, reg := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})

	if a := get(t, e, "/"); a.body != "main" {
		t.Fatalf("before: got %d %q, want main", a.code, a.body)
	}
	// The seed's failover: Start on the Standby first, so for a moment
	// both are Active; the higher epoch wins at once.
	begun := time.Now()
	xs.set(node.Active, 8)
	rs := waitChosen(t, e, "web", "standby-web")
	t.Logf("takeover followed in %s", time.Since(begun))
	if a := get(t, e, "/"); a.body != "standby" {
		t.Fatalf("after takeover: got %d %q, want standby", a.code, a.body)
	}
	if why := rs.Backends[0].Why; !strings.Contains(why, "stale") {
		t.Errorf("main's why = %q, want it stale", why)
	}
	if !strings.Contains(rs.Reason, "epoch 8") {
		t.Errorf("reason %q", rs.Reason)
	}
	xm.set(node.Inactive, 7) // then Stop on the Main: nothing changes
	time.Sleep(50 * time.Millisecond)
	if a := get(t, e, "/"); a.body != "standby" {
		t.Fatalf("after main stopped: got %q", a.body)
	}

	// Failback: Stop on the Standby (no side Active: maintenance), then
	// Start on the Main.
	xs.set(node.Inactive, 8)
	waitChosen(t, e, "web", "")
	if a := get(t, e, "/"); a.code != http.StatusServiceUnavailable {
		t.Fatalf("between: got %d, want 503", a.code)
	}
	xm.set(node.Active, 9)
	waitChosen(t, e, "web", "main-web")
	if a := get(t, e, "/"); a.body != "main" {
		t.Fatalf("after failback: got %q", a.body)
	}
	want := []string{"web:>main-web", "web:main-web>standby-web", "web:standby-web>", "web:>main-web"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Errorf("switches %v, want %v", got, want)
	}
	if got := counter(t, reg, "resilience_edge_switches_total", map[string]string{"route": "web"}); got != 3 {
		t.Errorf("switches_total = %v, want 3", got)
	}
	if s := e.Status(); s.Switches != 3 {
		t.Errorf("status switches = %d, want 3", s.Switches)
	}
}

func TestEdge_NoUsableBackend(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Inactive, 1), newFakeNode("xivo-standby", node.Failed, 1)
	page := []byte("<html><body>back soon</body></html>")
	e, log, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs),
		RetryAfter: 7 * time.Second, MaintenancePage: page})
	for _, method := range []string{"GET", "POST", "HEAD"} {
		t.Run(method, func(t *testing.T) {
			a := do(t, client(), method, "http://"+e.HTTPAddr()+"/", "", strings.NewReader("x"))
			if a.code != http.StatusServiceUnavailable {
				t.Fatalf("code %d, want 503", a.code)
			}
			if got := a.h.Get("Retry-After"); got != "7" {
				t.Errorf("Retry-After %q, want 7", got)
			}
			if !strings.HasPrefix(a.h.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type %q", a.h.Get("Content-Type"))
			}
			if method != "HEAD" && a.body != string(page) {
				t.Errorf("body %q, want the maintenance page", a.body)
			}
		})
	}
	rs := e.Status().Routes[0]
	if rs.Chosen != "" || !strings.Contains(rs.Reason, "no usable backend") || !strings.Contains(rs.Reason, "is failed") {
		t.Errorf("status %+v", rs)
	}
	if got := log.list(); len(got) != 0 {
		t.Errorf("switches %v, want none", got)
	}
	if main.gets.Load()+main.posts.Load()+standby.gets.Load()+standby.posts.Load() != 0 {
		t.Error("a backend was reached")
	}
}

func TestEdge_NodeUnreachable(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 3), newFakeNode("xivo-standby", node.Inactive, 2)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})
	waitChosen(t, e, "web", "main-web")

	begun := time.Now()
	xm.setDown(true) // the Main's agent dies: stream and polls fail
	rs := waitChosen(t, e, "web", "")
	t.Logf("unreachable noticed in %s", time.Since(begun))
	if !strings.Contains(rs.Backends[0].Why, "unreachable") {
		t.Errorf("why = %q", rs.Backends[0].Why)
	}
	if a := get(t, e, "/"); a.code != http.StatusServiceUnavailable {
		t.Errorf("code %d, want 503", a.code)
	}
	ns := e.Status().Nodes[0]
	if ns.Reachable || ns.Error == "" || ns.UnreachableSince.IsZero() {
		t.Errorf("node status %+v", ns)
	}

	xm.setDown(false) // back: the poller sees it, the stream reconnects
	waitChosen(t, e, "web", "main-web")
	waitFor(t, 3*time.Second, "stream back", func() bool { return e.Status().Nodes[0].Via == "events" })
	if a := get(t, e, "/"); a.body != "main" {
		t.Errorf("got %q", a.body)
	}
}

func TestEdge_HealthCheck(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	r := webRoute(main, standby)
	r.Main.Health = &Check{Path: "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 3, Fall: 2}
	e, log, reg := startEdge(t, Options{Routes: []Route{r}, Nodes: nodes(xm, xs)})
	waitFor(t, time.Second, "first check", func() bool { return !e.Status().Routes[0].Backends[0].CheckedAt.IsZero() })
	if a := get(t, e, "/"); a.body != "main" {
		t.Fatalf("healthy: got %d %q", a.code, a.body)
	}

	main.healthy.Store(false)
	rs := waitChosen(t, e, "web", "")
	if b := rs.Backends[0]; b.Health != "down" || !strings.Contains(b.HealthError, "503") {
		t.Errorf("backend status %+v", b)
	}
	if a := get(t, e, "/"); a.code != http.StatusServiceUnavailable {
		t.Errorf("sick: code %d, want 503", a.code)
	}

	main.healthy.Store(true)
	begun := time.Now()
	waitChosen(t, e, "web", "main-web")
	// Rise 3 at 20ms: not before two more intervals.
	if d := time.Since(begun); d < 30*time.Millisecond {
		t.Errorf("came back after %s: rise not honoured", d)
	}
	if a := get(t, e, "/"); a.body != "main" {
		t.Errorf("recovered: got %q", a.body)
	}
	want := []string{"web:>main-web", "web:main-web>", "web:>main-web"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Errorf("switches %v, want %v", got, want)
	}
	if counter(t, reg, "resilience_edge_health_checks_total", map[string]string{"backend": "main-web", "result": "fail"}) < 2 {
		t.Error("failed checks not counted")
	}
}

// A node that goes Active vouches for its services: its backend, down
// until then, is checked at once and one pass brings it up, not rise
// passes an interval apart.
func TestEdge_NodeActiveVouchesForItsBackend(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	r := webRoute(main, standby)
	r.Standby.Health = &Check{Path: "/health", Interval: time.Second, Timeout: time.Second, Rise: 3, Fall: 1}
	standby.healthy.Store(false) // its services are stopped
	e, _, _ := startEdge(t, Options{Routes: []Route{r}, Nodes: nodes(xm, xs)})
	waitFor(t, 2*time.Second, "standby checked down", func() bool { return e.Status().Routes[0].Backends[1].Health == "down" })

	standby.healthy.Store(true) // Start services on the standby...
	begun := time.Now()
	xs.set(node.Active, 2) // ...which then says it is Active
	waitChosen(t, e, "web", "standby-web")
	// Rise 3 at 1s would take 2s at least; one interval is 1s.
	if d := time.Since(begun); d > 500*time.Millisecond {
		t.Errorf("standby chosen %s after its node went Active, want one immediate check", d)
	}
}

func TestEdge_RetryOnConnectFailure(t *testing.T) {
	dead := refusingAddr(t, "127.0.0.2")
	standby := startWeb(t, "127.0.0.3", "standby")
	// Both Active at the same epoch: both usable, main chosen, standby
	// usable for retries.
	xm, xs := newFakeNode("xivo-main", node.Active, 5), newFakeNode("xivo-standby", node.Active, 5)
	r := Route{Name: "web",
		Main:    Backend{Name: "main-web", Node: "xivo-main", Address: dead},
		Standby: Backend{Name: "standby-web", Node: "xivo-standby", Address: standby.addr}}
	e, log, reg := startEdge(t, Options{Routes: []Route{r}, Nodes: nodes(xm, xs), MarkDownAfter: 3},
		func(e *Edge) { e.probeEvery = 20 * time.Millisecond })
	waitChosen(t, e, "web", "main-web")
	c := client()
	url := "http://" + e.HTTPAddr() + "/"

	t.Run("GET is retried on the other side", func(t *testing.T) {
		if a := do(t, c, "GET", url, "", nil); a.code != 200 || a.body != "standby" {
			t.Fatalf("got %d %q, want 200 standby", a.code, a.body)
		}
		if got := counter(t, reg, "resilience_edge_retries_total", map[string]string{"route": "web"}); got != 1 {
			t.Errorf("retries = %v, want 1", got)
		}
	})
	t.Run("POST is not", func(t *testing.T) {
		a := do(t, c, "POST", url, "", strings.NewReader(`{"a":1}`))
		if a.code != http.StatusServiceUnavailable {
			t.Fatalf("got %d %q, want 503", a.code, a.body)
		}
		if a.h.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		if n := standby.posts.Load(); n != 0 {
			t.Errorf("standby got %d POSTs", n)
		}
	})
	t.Run("failed connections mark the backend down", func(t *testing.T) {
		// Two failures so far; the third marks main down and the route
		// moves to standby.
		if a := do(t, c, "HEAD", url, "", nil); a.code != 200 {
			t.Fatalf("HEAD: %d", a.code)
		}
		rs := waitChosen(t, e, "web", "standby-web")
		if b := rs.Backends[0]; !b.MarkedDown || !strings.Contains(b.Why, "failed connections") {
			t.Errorf("main status %+v", b)
		}
		if a := do(t, c, "POST", url, "", strings.NewReader("x")); a.body != "standby" {
			t.Errorf("POST after the switch: %d %q", a.code, a.body)
		}
	})
	t.Run("a passing probe lifts the mark", func(t *testing.T) {
		startWebOn(t, mustListen(t, dead), "main")
		waitFor(t, 2*time.Second, "mark lifted", func() bool { return !e.Status().Routes[0].Backends[0].MarkedDown })
		// Sticky: both usable, the route stays where it is.
		if rs := e.Status().Routes[0]; rs.Chosen != "standby-web" || !rs.Backends[0].Usable {
			t.Errorf("status %+v", rs)
		}
	})
	want := []string{"web:>main-web", "web:main-web>standby-web"}
	if got := log.list(); !slices.Equal(got, want) {
		t.Errorf("switches %v, want %v", got, want)
	}
}

func TestNew_Errors(t *testing.T) {
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	ok := func() Options {
		return Options{HTTPListen: "127.0.0.1:0", Nodes: nodes(xm, xs), Routes: []Route{{Name: "web",
			Main:    Backend{Name: "a", Node: "xivo-main", Address: "127.0.0.2:80"},
			Standby: Backend{Name: "b", Node: "xivo-standby", Address: "127.0.0.3:80"}}}}
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no listen address", func(o *Options) { o.HTTPListen = "" }, "http listen address is required"},
		{"unknown node", func(o *Options) { o.Routes[0].Main.Node = "xivo-nowhere" }, `routes[0].main (a): node "xivo-nowhere" is not among the nodes`},
		{"bad address", func(o *Options) { o.Routes[0].Standby.Address = "nowhere" }, `routes[0].standby (b): address: "nowhere": want host:port`},
		{"same backend twice", func(o *Options) { o.Routes[0].Standby.Name = "a" }, "main and standby are the same backend"},
		{"backend redefined", func(o *Options) {
			o.Routes = append(o.Routes, Route{Name: "api", PathPrefix: "/api", Main: Backend{Name: "a", Node: "xivo-main", Address: "127.0.0.9:80"}, Standby: o.Routes[0].Standby})
		}, `routes[1].main: backend "a" is defined twice, differently`},
		{"duplicate route", func(o *Options) { r := o.Routes[0]; r.PathPrefix = "/x"; o.Routes = append(o.Routes, r) }, `route "web" defined twice`},
		{"duplicate match", func(o *Options) { r := o.Routes[0]; r.Name = "other"; o.Routes = append(o.Routes, r) }, `another route has host "" and path prefix "/"`},
		{"bad prefix", func(o *Options) { o.Routes[0].PathPrefix = "api" }, "must start with /"},
		{"sip without transport", func(o *Options) {
			o.SIP = []SIPRoute{{Name: "sip", Listen: "127.0.0.1:0", Main: o.Routes[0].Main, Standby: o.Routes[0].Standby}}
		}, "set udp, tcp or both"},
		{"tls without certificate", func(o *Options) { o.TLS = &tlsConfigEmpty }, "no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok()
			tc.change(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("close before start and twice", func(t *testing.T) {
		e, err := New(ok())
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		e.Close()
		if s := e.Status(); len(s.Routes) != 1 || s.Routes[0].Chosen != "" {
			t.Errorf("status before start %+v", s)
		}
	})
	t.Run("start twice", func(t *testing.T) {
		e, err := New(ok())
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err == nil {
			t.Error("second Start accepted")
		}
	})
}

func TestEdge_MatchAllocs(t *testing.T) {
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	b := func(n string) Backend { return Backend{Name: n, Node: "xivo-main", Address: "127.0.0.2:80"} }
	e, err := New(Options{HTTPListen: "127.0.0.1:0", Nodes: nodes(xm, xs), Routes: []Route{
		{Name: "any", Main: b("a"), Standby: b("b")},
		{Name: "cc", Host: "cc.example.com", Main: b("c"), Standby: b("d")},
		{Name: "api", PathPrefix: "/api/", Main: b("e"), Standby: b("f")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var got *route
	allocs := testing.AllocsPerRun(1000, func() {
		got = e.match("CC.example.com:8443", "/api/x")
		_ = got.cur.Load()
	})
	if got == nil || got.name != "cc" {
		t.Fatalf("matched %v, want cc", got)
	}
	if allocs != 0 {
		t.Errorf("match + load: %v allocations, want 0", allocs)
	}
	if r := e.match("other", "/api/x"); r.name != "api" {
		t.Errorf("matched %s, want api", r.name)
	}
}

func TestEdge_StaleNeverRouted(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	t.Run("newer side lost from sight", func(t *testing.T) {
		xm, xs := newFakeNode("xivo-main", node.Active, 7), newFakeNode("xivo-standby", node.Inactive, 6)
		e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})
		xs.set(node.Active, 8)
		waitChosen(t, e, "web", "standby-web")
		// The Standby's agent is cut off while the superseded Main
		// still says Active at 7: the Main stays stale.
		xs.setDown(true)
		rs := waitChosen(t, e, "web", "")
		if why := rs.Backends[0].Why; !strings.Contains(why, "stale: xivo-standby was active at epoch 8") {
			t.Errorf("main's why = %q", why)
		}
		// Start on the Main again takes a higher epoch: it is current.
		xm.set(node.Active, 9)
		waitChosen(t, e, "web", "main-web")
	})
	t.Run("a node's view of its peer counts", func(t *testing.T) {
		xm, xs := newFakeNode("xivo-main", node.Active, 7), newFakeNode("xivo-standby", node.Active, 8)
		xm.snap.Peer = &node.PeerView{Name: "xivo-standby", Status: node.Active, Epoch: 8}
		xs.setDown(true) // the Edge starts without seeing the Standby
		e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs)})
		if rs := e.Status().Routes[0]; rs.Chosen != "" || !strings.Contains(rs.Backends[0].Why, "stale") {
			t.Errorf("route %+v", rs)
		}
		if a := get(t, e, "/"); a.code != http.StatusServiceUnavailable {
			t.Errorf("got %d %q, want 503", a.code, a.body)
		}
	})
}

func TestEdge_Changes(t *testing.T) {
	main, standby := startWeb(t, "127.0.0.2", "main"), startWeb(t, "127.0.0.3", "standby")
	xm, xs := newFakeNode("xivo-main", node.Active, 1), newFakeNode("xivo-standby", node.Inactive, 0)
	e, _, _ := startEdge(t, Options{Routes: []Route{webRoute(main, standby)}, Nodes: nodes(xm, xs), NodePoll: time.Hour})
	select {
	case <-e.Changes(): // the start-up choice
	default:
	}
	xs.set(node.Active, 2)
	deadline := time.After(2 * time.Second)
	for {
		select {
		case <-e.Changes():
		case <-deadline:
			t.Fatal("no change signalled for the takeover")
		}
		if r := e.Status().Routes[0]; r.Chosen == "standby-web" {
			return
		}
	}
}
