package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

const (
	adminPassword  = "admin password 1"
	viewerPassword = "viewer password 1"
	opsToken       = "ops-token-0123456789abcdef"
)

// testUserConfig is admin and viewer, hashed at bcrypt's lowest cost so
// that tests stay quick.
func testUserConfig() []config.User {
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return string(h)
	}
	return []config.User{
		{Name: "admin", PasswordHash: hash(adminPassword), Role: "admin"},
		{Name: "viewer", PasswordHash: hash(viewerPassword), Role: "viewer"},
	}
}

// sharedUsers is built once: auth.NewUsers hashes a dummy password at
// bcrypt's default cost, which the race detector makes slow.
var sharedUsers = sync.OnceValues(func() (*auth.Users, error) { return auth.NewUsers(testUserConfig()) })

func testUsers(t *testing.T) *auth.Users {
	t.Helper()
	u, err := sharedUsers()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// nopUnit is a service that starts and stops at once.
type nopUnit struct{}

func (nopUnit) Start(ctx context.Context) error { return nil }
func (nopUnit) Stop(ctx context.Context) error  { return nil }

// fakePeer is the other node, as this node's checks see it.
type fakePeer struct {
	mu   sync.Mutex
	snap node.Snapshot
	err  error
}

func (p *fakePeer) Name() string { return "xivo-standby" }

func (p *fakePeer) Status(ctx context.Context) (node.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap, p.err
}

func (p *fakePeer) set(st node.Status, epoch uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snap = node.Snapshot{Name: "xivo-standby", Status: st, Desired: st, Epoch: epoch}
	p.err = err
}

// fixture is a node (a real Machine and store, instant services, a fake
// peer) with the API and the page on one mux, served over HTTP.
type fixture struct {
	srv   *httptest.Server
	web   *Server
	m     *node.Machine
	st    *store.Store
	peer  *fakePeer
	clock *fakeClock
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	peer := &fakePeer{}
	peer.set(node.Inactive, 0, nil)
	m, err := node.New(node.Options{
		Name: "xivo-main", Kind: "xivo", Role: "main", Mode: "manual",
		Services: []node.Service{{Name: "consul", Unit: nopUnit{}}, {Name: "asterisk", Unit: nopUnit{}}, {Name: "xivo-ctid", Unit: nopUnit{}}},
		Peer:     peer, Store: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	opts.Machine, opts.History, opts.Users = m, st, testUsers(t)
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens([]config.Token{{Name: "ops", Hash: auth.HashToken(opsToken), Scope: "operate"}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Options{Machine: m, History: st, Auth: api.Chain{api.BearerAuth{Tokens: tokens}, w}, Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux)
	w.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		m.Close(context.Background())
		st.Close()
	})
	return &fixture{srv: srv, web: w, m: m, st: st, peer: peer, clock: clock}
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	f    *fixture
	c    *http.Client
	jar  *cookiejar.Jar
	last string // body of the last response
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(c.CloseIdleConnections)
	return &browser{t: t, f: f, c: c, jar: jar}
}

func (b *browser) do(method, path string, form url.Values, header map[string]string) *http.Response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.last = string(data)
	return resp
}

func (b *browser) get(path string) *http.Response { return b.do("GET", path, nil, nil) }

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	csrfMeta  = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)
)

// formToken reads the csrf field of the last page.
func (b *browser) formToken() string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no csrf field in:\n%s", b.last)
	}
	return m[1]
}

// login logs in through the form and returns the session's CSRF token.
func (b *browser) login(user, password string) string {
	b.t.Helper()
	b.get("/login")
	resp := b.do("POST", "/login", url.Values{"csrf": {b.formToken()}, "username": {user}, "password": {password}, "next": {"/"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		b.t.Fatalf("login %s: %s %s\n%s", user, resp.Status, resp.Header.Get("Location"), b.last)
	}
	if resp := b.get("/"); resp.StatusCode != http.StatusOK {
		b.t.Fatalf("GET / after login: %s", resp.Status)
	}
	m := csrfMeta.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatal("no csrf-token meta on the page")
	}
	return m[1]
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.f.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func wantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %s, want %d", resp.Request.Method, resp.Request.URL.Path, resp.Status, code)
	}
}

func wantBody(t *testing.T, b *browser, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(b.last, p) {
			t.Fatalf("page lacks %q:\n%s", p, b.last)
		}
	}
}

func TestServer_Login(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)

	t.Run("pages need a login and come back after it", func(t *testing.T) {
		resp := b.get("/history?before=3")
		wantStatus(t, resp, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "/login?next=%2Fhistory%3Fbefore%3D3" {
			t.Fatalf("Location %q", loc)
		}
		wantStatus(t, b.get("/login?next=%2Fhistory%3Fbefore%3D3"), http.StatusOK)
		wantBody(t, b, `name="next" value="/history?before=3"`, "Log in to xivo-main", `autocomplete="current-password"`)
		resp = b.do("POST", "/login", url.Values{"csrf": {b.formToken()}, "username": {"admin"}, "password": {adminPassword}, "next": {"/history?before=3"}}, nil)
		wantStatus(t, resp, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "/history?before=3" {
			t.Fatalf("Location %q", loc)
		}
	})
	t.Run("the session cookie is HttpOnly, SameSite=Strict, Path=/", func(t *testing.T) {
		b := f.browser(t)
		b.get("/login")
		resp := b.do("POST", "/login", url.Values{"csrf": {b.formToken()}, "username": {"admin"}, "password": {adminPassword}}, nil)
		var c *http.Cookie
		for _, rc := range resp.Cookies() {
			if rc.Name == f.web.cookieName {
				c = rc
			}
		}
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 0 {
			t.Fatalf("session cookie %+v", c)
		}
	})
	t.Run("a redirect target off this site is ignored", func(t *testing.T) {
		for _, next := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", "/partials/live"} {
			if got := localPath(next); got != "/" {
				t.Errorf("localPath(%q) = %q", next, got)
			}
		}
		if got := localPath("/history?before=9"); got != "/history?before=9" {
			t.Errorf("localPath kept %q", got)
		}
	})
	t.Run("a wrong password is refused", func(t *testing.T) {
		b := f.browser(t)
		b.get("/login")
		resp := b.do("POST", "/login", url.Values{"csrf": {b.formToken()}, "username": {"admin"}, "password": {"wrong"}}, nil)
		wantStatus(t, resp, http.StatusUnauthorized)
		wantBody(t, b, "Wrong user name or password.", `value="admin"`)
		if b.cookie(f.web.cookieName) != nil {
			t.Fatal("a session cookie after a wrong password")
		}
	})
	t.Run("a login post needs the login form's token", func(t *testing.T) {
		b := f.browser(t)
		resp := b.do("POST", "/login", url.Values{"csrf": {"made-up"}, "username": {"admin"}, "password": {adminPassword}}, nil)
		wantStatus(t, resp, http.StatusForbidden)
		b.get("/login")
		resp = b.do("POST", "/login", url.Values{"csrf": {"made-up"}, "username": {"admin"}, "password": {adminPassword}}, nil)
		wantStatus(t, resp, http.StatusForbidden)
		wantBody(t, b, "This login form has expired")
	})
	t.Run("logout needs the CSRF token, then ends the session", func(t *testing.T) {
		b := f.browser(t)
		csrf := b.login("admin", adminPassword)
		old := b.cookie(f.web.cookieName).Value
		wantStatus(t, b.do("POST", "/logout", url.Values{}, nil), http.StatusForbidden)
		resp := b.do("POST", "/logout", url.Values{"csrf": {csrf}}, nil)
		wantStatus(t, resp, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "/login?out=1" {
			t.Fatalf("Location %q", loc)
		}
		wantStatus(t, b.get("/"), http.StatusSeeOther)
		// The old cookie is dead on the server too, not only in this jar.
		other := f.browser(t)
		u, _ := url.Parse(f.srv.URL)
		other.jar.SetCookies(u, []*http.Cookie{{Name: f.web.cookieName, Value: old}})
		wantStatus(t, other.get("/"), http.StatusSeeOther)
		wantStatus(t, other.do("GET", "/api/v1/status", nil, nil), http.StatusUnauthorized)
	})
}

func TestServer_LoginThrottle(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	try := func(password string) *http.Response {
		b.get("/login")
		return b.do("POST", "/login", url.Values{"csrf": {b.formToken()}, "username": {"admin"}, "password": {password}}, nil)
	}
	for i := 1; i <= 4; i++ {
		wantStatus(t, try("wrong"), http.StatusUnauthorized)
	}
	resp := try("wrong")
	wantStatus(t, resp, http.StatusTooManyRequests)
	if ra := resp.Header.Get("Retry-After"); ra != "30" {
		t.Fatalf("Retry-After %q, want 30", ra)
	}
	wantBody(t, b, "Too many failed logins from 127.0.0.1. Try again in 30 seconds.")

	t.Run("locked out, even the right password is refused", func(t *testing.T) {
		wantStatus(t, try(adminPassword), http.StatusTooManyRequests)
	})
	t.Run("after the lockout the right password works", func(t *testing.T) {
		f.clock.Add(31 * time.Second)
		wantStatus(t, try(adminPassword), http.StatusSeeOther)
	})
}

func TestServer_SessionExpiry(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	b.login("admin", adminPassword)

	f.clock.Add(20 * time.Minute)
	wantStatus(t, b.do("GET", "/partials/live", nil, map[string]string{BackgroundHeader: "1"}), http.StatusOK)
	f.clock.Add(11 * time.Minute) // 31 min since the last request that counts
	wantStatus(t, b.do("GET", "/partials/live", nil, map[string]string{BackgroundHeader: "1"}), http.StatusUnauthorized)
	resp := b.get("/")
	wantStatus(t, resp, http.StatusSeeOther)

	t.Run("activity keeps a session, up to its absolute age", func(t *testing.T) {
		b := f.browser(t)
		b.login("admin", adminPassword)
		for range 35 {
			f.clock.Add(20 * time.Minute)
			wantStatus(t, b.get("/"), http.StatusOK)
		}
		f.clock.Add(20 * time.Minute) // 12 h since the login
		wantStatus(t, b.get("/"), http.StatusSeeOther)
	})
}

func TestServer_SecurityHeaders(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	check := func(t *testing.T, resp *http.Response) {
		t.Helper()
		h := resp.Header
		for k, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "same-origin",
			"Cache-Control":          "no-store",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		csp := h.Get("Content-Security-Policy")
		for _, part := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, part) {
				t.Errorf("CSP %q lacks %q", csp, part)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP allows inline code: %q", csp)
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Error("HSTS over plain HTTP")
		}
	}
	check(t, b.get("/login"))
	b.login("admin", adminPassword)
	check(t, b.get("/"))
	check(t, b.get("/history"))
	check(t, b.get("/services/stop"))

	t.Run("no inline script or style in the pages", func(t *testing.T) {
		for _, path := range []string{"/", "/history", "/services/start", "/services/stop"} {
			b.get(path)
			if regexp.MustCompile(`<script>|<script [^>]*>[^<]|<style|style="|\son[a-z]+="`).MatchString(b.last) {
				t.Errorf("%s has inline script or style", path)
			}
		}
	})
	t.Run("under TLS cookies are Secure with the __Host- prefix, and HSTS is sent", func(t *testing.T) {
		f := newFixture(t, Options{Secure: true})
		b := f.browser(t)
		resp := b.get("/login")
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS under TLS")
		}
		var login *http.Cookie
		for _, c := range resp.Cookies() {
			login = c
		}
		if login == nil || !strings.HasPrefix(login.Name, "__Host-") || !login.Secure || login.Path != "/" {
			t.Fatalf("login cookie %+v", login)
		}
	})
}

func TestServer_Static(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	b.get("/login")
	m := regexp.MustCompile(`href="(/static/app\.[0-9a-f]{12}\.css)"`).FindStringSubmatch(b.last)
	if m == nil {
		t.Fatalf("no checksummed stylesheet in:\n%s", b.last)
	}
	resp := b.get(m[1])
	wantStatus(t, resp, http.StatusOK)
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
		t.Fatalf("Cache-Control %q", cc)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Fatalf("Content-Type %q", ct)
	}
	etag := resp.Header.Get("ETag")
	if resp := b.do("GET", m[1], nil, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %s", resp.Status)
	}
	wantStatus(t, b.get("/static/app.css"), http.StatusNotFound)
	wantStatus(t, b.get("/static/app.000000000000.css"), http.StatusNotFound)
}

func TestServer_StopAndStartWithoutJavaScript(t *testing.T) {
	f := newFixture(t, Options{})
	if _, err := f.m.StartServices(context.Background(), node.Request{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	csrf := b.login("admin", adminPassword)
	wantBody(t, b, "Services", "IPBX", "Resilience Management", `data-status="active"`, `id="stop-button" data-action-button>`)

	t.Run("the Stop confirmation says what will happen", func(t *testing.T) {
		wantStatus(t, b.get("/services/stop"), http.StatusOK)
		wantBody(t, b, "Stop services on xivo-main?", "becomes <strong>Inactive</strong>",
			"<li>xivo-ctid</li><li>asterisk</li><li>consul</li>", "no node serves", `name="reason"`)
	})
	t.Run("a post without the CSRF token is refused and changes nothing", func(t *testing.T) {
		wantStatus(t, b.do("POST", "/services/stop", url.Values{"reason": {"x"}}, nil), http.StatusForbidden)
		wantStatus(t, b.do("POST", "/services/stop", url.Values{"reason": {"x"}, "csrf": {"wrong"}}, nil), http.StatusForbidden)
		wantBody(t, b, "security token")
		if s := f.m.Snapshot(); s.Status != node.Active {
			t.Fatalf("status %s after refused posts", s.Status)
		}
	})
	t.Run("a post from another site is refused", func(t *testing.T) {
		resp := b.do("POST", "/services/stop", url.Values{"csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"})
		wantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("Stop services: post, redirect, get with a message", func(t *testing.T) {
		resp := b.do("POST", "/services/stop", url.Values{"csrf": {csrf}, "reason": {"main   maintenance\r\nnow"}}, nil)
		wantStatus(t, resp, http.StatusSeeOther)
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Fatalf("Location %q", loc)
		}
		b.get("/")
		wantBody(t, b, `data-flash="ok"`, "Services stopped on xivo-main: inactive at epoch 1.", `data-status="inactive"`)
		b.get("/")
		if strings.Contains(b.last, "data-flash") {
			t.Fatal("the message shows twice")
		}
		h, _ := f.st.History(1, 0)
		if len(h) != 1 || h[0].Actor != "admin" || h[0].Action != "stop" || h[0].Result != "ok" || h[0].Reason != "main maintenance now" || h[0].Remote != "127.0.0.1" {
			t.Fatalf("audit %+v", h)
		}
	})
	t.Run("Start while the peer is active: the confirmation offers the takeover", func(t *testing.T) {
		f.peer.set(node.Active, 4, nil)
		b.get("/services/start")
		wantBody(t, b, "xivo-standby is active</strong> at epoch 4", "<strong>takeover</strong>", `id="force" name="force" value="1" required`,
			"Take over and start services", "epoch <strong>5</strong>")
		wantStatus(t, b.do("POST", "/services/start", url.Values{"csrf": {csrf}}, nil), http.StatusSeeOther)
		b.get("/")
		wantBody(t, b, `data-flash="error"`, "Start services refused: xivo-standby is active (epoch 4)")
		wantStatus(t, b.do("POST", "/services/start", url.Values{"csrf": {csrf}, "force": {"1"}, "reason": {"takeover"}}, nil), http.StatusSeeOther)
		b.get("/")
		wantBody(t, b, "Services started on xivo-main: active at epoch 5.", "This node took over from <strong>xivo-standby</strong> at epoch 5")
		h, _ := f.st.History(1, 0)
		if h[0].Actor != "admin" || h[0].Action != "start" || h[0].Result != "ok" {
			t.Fatalf("audit %+v", h[0])
		}
	})
	t.Run("Start while the peer cannot be reached says so", func(t *testing.T) {
		f.m.StopServices(context.Background(), node.Request{Actor: "setup"})
		f.peer.set("", 0, fmt.Errorf("dial tcp 127.0.0.3:8442: connection refused"))
		b.get("/services/start")
		wantBody(t, b, "xivo-standby could not be reached</strong> (dial tcp 127.0.0.3:8442: connection refused)", "make sure xivo-standby is stopped")
		if strings.Contains(b.last, `name="force"`) {
			t.Fatal("force offered while the peer is unreachable")
		}
	})
	t.Run("the dialog gets the confirmation alone", func(t *testing.T) {
		b.get("/services/start?partial=1")
		if strings.Contains(b.last, "<html") || !strings.Contains(b.last, `id="confirm-title"`) || !strings.Contains(b.last, "data-close") {
			t.Fatalf("partial:\n%s", b.last)
		}
	})
}

func TestServer_Viewer(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	csrf := b.login("viewer", viewerPassword)
	wantBody(t, b, `id="viewer-note"`, `id="start-button" data-action-button disabled`, `id="stop-button" data-action-button disabled`, `id="user-role">viewer<`)
	wantStatus(t, b.get("/services/start"), http.StatusForbidden)
	wantStatus(t, b.get("/services/stop?partial=1"), http.StatusForbidden)
	wantStatus(t, b.do("POST", "/services/start", url.Values{"csrf": {csrf}}, nil), http.StatusForbidden)
	wantBody(t, b, "Your role (viewer) may look but not start or stop services.")
	resp := b.do("POST", "/api/v1/services/start", nil, map[string]string{CSRFHeader: csrf, "Content-Type": "application/json"})
	wantStatus(t, resp, http.StatusForbidden)
	if !strings.Contains(b.last, "viewer has scope read") {
		t.Fatalf("API answer %s", b.last)
	}
	if s := f.m.Snapshot(); s.Status != node.Inactive || s.Transition != nil {
		t.Fatalf("a viewer changed the node: %s", s.Status)
	}
	wantStatus(t, b.get("/history"), http.StatusOK)
	wantStatus(t, b.get("/api/v1/status"), http.StatusOK)
}

func TestServer_APIWithSession(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	csrf := b.login("admin", adminPassword)
	jsonBody := map[string]string{"Content-Type": "application/json"}

	wantStatus(t, b.get("/api/v1/status"), http.StatusOK)
	var s node.Snapshot
	if err := json.Unmarshal([]byte(b.last), &s); err != nil || s.Name != "xivo-main" {
		t.Fatalf("status %q %v", b.last, err)
	}

	t.Run("a cookie POST without X-CSRF-Token gets 403", func(t *testing.T) {
		resp := b.do("POST", "/api/v1/services/start", nil, jsonBody)
		wantStatus(t, resp, http.StatusForbidden)
		if !strings.Contains(b.last, `"code":"forbidden"`) || !strings.Contains(b.last, CSRFHeader) {
			t.Fatalf("body %s", b.last)
		}
		resp = b.do("POST", "/api/v1/services/start", nil, map[string]string{"Content-Type": "application/json", CSRFHeader: csrf + "x"})
		wantStatus(t, resp, http.StatusForbidden)
		if s := f.m.Snapshot(); s.Status != node.Inactive {
			t.Fatalf("status %s", s.Status)
		}
	})
	t.Run("with the token but from another site it gets 403", func(t *testing.T) {
		resp := b.do("POST", "/api/v1/services/start", nil, map[string]string{"Content-Type": "application/json", CSRFHeader: csrf, "Sec-Fetch-Site": "cross-site"})
		wantStatus(t, resp, http.StatusForbidden)
	})
	t.Run("with the token it acts as the user", func(t *testing.T) {
		h := map[string]string{"Content-Type": "application/json", CSRFHeader: csrf}
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/services/start", strings.NewReader(`{"reason":"from the page"}`))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantStatus(t, resp, http.StatusOK)
		e, _ := f.st.History(1, 0)
		if e[0].Actor != "admin" || e[0].Reason != "from the page" || e[0].Result != "ok" {
			t.Fatalf("audit %+v", e[0])
		}
	})
	t.Run("bearer tokens still work beside sessions", func(t *testing.T) {
		anon := f.browser(t)
		wantStatus(t, anon.do("GET", "/api/v1/status", nil, nil), http.StatusUnauthorized)
		wantStatus(t, anon.do("GET", "/api/v1/status", nil, map[string]string{"Authorization": "Bearer " + opsToken}), http.StatusOK)
	})
	t.Run("the event stream takes the session cookie", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/api/v1/events", nil)
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		wantStatus(t, resp, http.StatusOK)
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(resp.Body, buf, 20)
		if !strings.Contains(string(buf[:n]), "retry:") {
			t.Fatalf("stream began %q", buf[:n])
		}
	})
}

func TestServer_History(t *testing.T) {
	f := newFixture(t, Options{})
	var entries []store.Entry
	for i := range 60 {
		entries = append(entries, store.Entry{Actor: "admin", Action: "stop", Result: "noop", Reason: fmt.Sprintf("entry %d", i+1)})
	}
	if _, err := f.st.Write(nil, entries...); err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	b.login("viewer", viewerPassword)

	wantStatus(t, b.get("/history"), http.StatusOK)
	seqs := regexp.MustCompile(`data-seq="(\d+)"`).FindAllStringSubmatch(b.last, -1)
	if len(seqs) != historyPage || seqs[0][1] != "60" || seqs[historyPage-1][1] != "11" {
		t.Fatalf("%d rows, first %v", len(seqs), seqs[:1])
	}
	wantBody(t, b, `href="/history?before=11" rel="next"`, "Reason:</span> entry 60")

	wantStatus(t, b.get("/history?before=11"), http.StatusOK)
	seqs = regexp.MustCompile(`data-seq="(\d+)"`).FindAllStringSubmatch(b.last, -1)
	if len(seqs) != 10 || seqs[0][1] != "10" || seqs[9][1] != "1" {
		t.Fatalf("page 2: %d rows", len(seqs))
	}
	if strings.Contains(b.last, "rel=\"next\"") {
		t.Fatal("an Older link on the last page")
	}
	wantBody(t, b, `id="newest-link"`)
	wantStatus(t, b.get("/history?before=abc"), http.StatusBadRequest)
}

func TestServer_NotFound(t *testing.T) {
	f := newFixture(t, Options{})
	b := f.browser(t)
	wantStatus(t, b.get("/nope"), http.StatusNotFound)
	b.login("admin", adminPassword)
	wantStatus(t, b.get("/nope"), http.StatusNotFound)
	wantBody(t, b, "There is no page at /nope.")
	wantStatus(t, b.get("/api/v1/nope"), http.StatusNotFound)
	if !strings.Contains(b.last, `"not_found"`) {
		t.Fatalf("the API's 404 was taken over: %s", b.last)
	}
}

func TestNew(t *testing.T) {
	t.Run("missing dependencies", func(t *testing.T) {
		if _, err := New(Options{}); err == nil {
			t.Fatal("New without a machine succeeded")
		}
	})
	t.Run("a missing template fails at start-up", func(t *testing.T) {
		fsys := fstest.MapFS{}
		for _, name := range append([]string{"layout", "partials"}, pageNames...) {
			data, err := templateFS.ReadFile("templates/" + name + ".html")
			if err != nil {
				t.Fatal(err)
			}
			fsys["templates/"+name+".html"] = &fstest.MapFile{Data: data}
		}
		f := newFixture(t, Options{})
		if _, err := parseTemplates(fsys, f.web.funcs()); err != nil {
			t.Fatalf("complete set: %v", err)
		}
		delete(fsys, "templates/history.html")
		if _, err := parseTemplates(fsys, f.web.funcs()); err == nil || !strings.Contains(err.Error(), "history.html") {
			t.Fatalf("err = %v, want one naming history.html", err)
		}
		fsys["templates/history.html"] = &fstest.MapFile{Data: []byte(`{{define "title"}}x{{end}}`)}
		if _, err := parseTemplates(fsys, f.web.funcs()); err == nil || !strings.Contains(err.Error(), `"content"`) {
			t.Fatalf("err = %v, want one naming the missing content", err)
		}
	})
	t.Run("a missing static file fails at start-up", func(t *testing.T) {
		fsys := fstest.MapFS{"static/app.css": {Data: []byte("x")}, "static/icon.svg": {Data: []byte("x")}}
		if _, err := loadAssets(fsys); err == nil || !strings.Contains(err.Error(), "app.js") {
			t.Fatalf("err = %v", err)
		}
	})
}
