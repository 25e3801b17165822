package web_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/xivo-resilience/resilience/internal/node"
)

// csrfJS reads the page's CSRF token.
const csrfJS = `document.querySelector('meta[name="csrf-token"]').content`

// TestBrowser_ViewerCannotAct: a viewer sees everything and can press
// nothing; the server refuses what the page does not offer.
func TestBrowser_ViewerCannotAct(t *testing.T) {
	chromiumPath(t) // skip (or fail under CI) before starting agents
	p := startPair(t)
	tab := newBrowser(t)
	main := p.client("xivo-main")

	login(t, tab, p.url("xivo-main"), "viewer", viewerPassword)
	wantText(t, tab, "#user-role", "viewer")
	wantText(t, tab, "#viewer-note", "cannot start or stop services")
	wantText(t, tab, "#node-status", "Active")
	if n := count(t, tab, "#start-button:disabled, #stop-button:disabled"); n != 2 {
		t.Fatalf("%d of the two buttons disabled for a viewer", n)
	}
	screenshot(t, tab, "viewer")

	t.Run("accessible: labels, names, landmarks, visible focus", func(t *testing.T) {
		wantAccessible(t, tab)
		if n := count(t, tab, "#announcer[aria-live]"); n != 1 {
			t.Fatal("no aria-live region for the progress")
		}
		wantFocusRings(t, tab, 6)
		navigate(t, tab, p.url("xivo-main")+"/history")
		wantAccessible(t, tab)
		navigate(t, tab, p.url("xivo-main")+"/")
		waitLive(t, tab)
		wantNoProblems(t, tab)
	})

	t.Run("a button enabled by hand gets a refusal", func(t *testing.T) {
		// Enabled and clicked in one go: a live refresh in between would
		// render the disabled button again.
		eval[bool](t, tab, `(() => { const b = document.querySelector('#stop-button'); b.disabled = false; b.click(); return true; })()`)
		waitFor(t, tab, `#confirm-dialog[open] [data-flash="error"]`)
		wantText(t, tab, "#confirm-dialog", "Your role (viewer) may look but not start or stop services.")
		click(t, tab, "#confirm-dialog .flash-close")
		do(t, tab, chromedp.Evaluate[chromedp.Void](`document.querySelector('#confirm-dialog').close()`))
	})
	t.Run("the API and the form refuse a viewer, CSRF token or not", func(t *testing.T) {
		api := fetchStatus(t, tab, `fetch('/api/v1/services/stop', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': `+csrfJS+`}, body: '{}'})`)
		form := fetchStatus(t, tab, `fetch('/services/stop', {method: 'POST', body: new URLSearchParams({csrf: `+csrfJS+`})})`)
		if api != 403 || form != 403 {
			t.Fatalf("API %d, form %d: want 403 and 403", api, form)
		}
	})
	s, err := main.Status(context.Background())
	if err != nil || s.Status != node.Active || s.Epoch != 1 {
		t.Fatalf("the viewer changed the node: %s epoch %d %v", s.Status, s.Epoch, err)
	}
}

// TestBrowser_CSRFRequired: from a logged-in admin's page, a state-changing
// request without the session's CSRF token is refused, by the API and by
// the form handlers alike; with it, it goes.
func TestBrowser_CSRFRequired(t *testing.T) {
	chromiumPath(t) // skip (or fail under CI) before starting agents
	p := startPair(t)
	tab := newBrowser(t)
	main := p.client("xivo-main")
	login(t, tab, p.url("xivo-main"), "admin", adminPassword)

	refused := map[string]string{
		"API without X-CSRF-Token":    `fetch('/api/v1/services/stop', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'})`,
		"API with a wrong token":      `fetch('/api/v1/services/stop', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': 'x' + ` + csrfJS + `}, body: '{}'})`,
		"form without the csrf field": `fetch('/services/stop', {method: 'POST', body: new URLSearchParams({reason: 'no token'})})`,
		"form with a wrong token":     `fetch('/services/stop', {method: 'POST', body: new URLSearchParams({csrf: 'forged'})})`,
		"logout without the token":    `fetch('/logout', {method: 'POST', body: new URLSearchParams({})})`,
	}
	for name, js := range refused {
		t.Run(name, func(t *testing.T) {
			if code := fetchStatus(t, tab, js); code != 403 {
				t.Fatalf("HTTP %d, want 403", code)
			}
		})
	}
	s, err := main.Status(context.Background())
	if err != nil || s.Status != node.Active {
		t.Fatalf("refused requests changed the node: %s %v", s.Status, err)
	}
	h, _ := main.History(context.Background(), 20, 0)
	for _, e := range h {
		if e.Actor == "admin" {
			t.Fatalf("a refused request reached the audit log: %+v", e)
		}
	}
	t.Run("with the token the same request goes", func(t *testing.T) {
		code := fetchStatus(t, tab, `fetch('/api/v1/services/stop', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': `+csrfJS+`}, body: '{"reason":"with the token"}'})`)
		if code != 200 {
			t.Fatalf("HTTP %d, want 200", code)
		}
		waitStatus(t, tab, "inactive")
		h, err := main.History(context.Background(), 1, 0)
		if err != nil || h[0].Actor != "admin" || h[0].Reason != "with the token" {
			t.Fatalf("audit %+v %v", h, err)
		}
	})
}

// TestBrowser_LoginRefusedAndThrottled: a wrong password is refused, and
// after five failures the address is locked out, right password or not.
func TestBrowser_LoginRefusedAndThrottled(t *testing.T) {
	chromiumPath(t) // skip (or fail under CI) before starting agents
	p := startPair(t)
	tab := newBrowser(t)
	base := p.url("xivo-main")
	attempt := func(password string) int64 {
		t.Helper()
		navigate(t, tab, base+"/login")
		do(t, tab,
			chromedp.SetValue(chromedp.CSS("#username"), "admin"),
			chromedp.SetValue(chromedp.CSS("#password"), password),
		)
		resp := submit(t, tab, "#login-button")
		if resp.Status == 429 {
			ra, _ := resp.Headers["Retry-After"].(string)
			if n, err := strconv.Atoi(ra); err != nil || n < 1 || n > 30 {
				t.Errorf("Retry-After %q, want 1 to 30 seconds", ra)
			}
		}
		return resp.Status
	}
	if code := attempt("not the password"); code != 401 {
		t.Fatalf("wrong password: HTTP %d, want 401", code)
	}
	wantText(t, tab, "#login-error", "Wrong user name or password.")
	wantAccessible(t, tab)
	if v := run(t, tab, chromedp.Value(chromedp.CSS("#password"))); v != "" {
		t.Fatal("the password field came back filled")
	}
	screenshot(t, tab, "login-refused")
	for i := 2; i <= 4; i++ {
		if code := attempt("not the password"); code != 401 {
			t.Fatalf("failure %d: HTTP %d, want 401", i, code)
		}
	}
	if code := attempt("not the password"); code != 429 {
		t.Fatalf("failure 5: HTTP %d, want 429", code)
	}
	wantText(t, tab, "#login-error", "Too many failed logins from 127.0.0.1. Try again in 30 seconds.")
	screenshot(t, tab, "login-throttled")
	if code := attempt(adminPassword); code != 429 {
		t.Fatalf("right password while locked out: HTTP %d, want 429", code)
	}
	if !strings.HasSuffix(run(t, tab, chromedp.Location()), "/login") {
		t.Fatal("logged in while locked out")
	}
}

// TestBrowser_FailedAndWarnings shows the page in its harder states: a
// Start while the peer is down, a node that stays inactive after a
// restart because its peer took over, and a service that fails to start.
func TestBrowser_FailedAndWarnings(t *testing.T) {
	chromiumPath(t)
	p := startPair(t)
	browser := newBrowser(t)
	standbyTab, mainTab := browser, newTab(t, browser)

	t.Run("Start services on the Standby while the Main is down", func(t *testing.T) {
		p.stop("xivo-main")
		login(t, standbyTab, p.url("xivo-standby"), "admin", adminPassword)
		waitFor(t, standbyTab, `[data-warning="peer_unreachable"]`)
		wantText(t, standbyTab, "#peer-status", "Unreachable")
		confirmAction(t, standbyTab, "start", "main is down")
		wantText(t, standbyTab, "#peer-check", "xivo-main could not be reached", "make sure xivo-main is stopped")
		if n := count(t, standbyTab, "#confirm-dialog #force"); n != 0 {
			t.Fatal("force offered while the peer is unreachable")
		}
		click(t, standbyTab, "#confirm-submit")
		waitStatus(t, standbyTab, "active")
		waitFor(t, standbyTab, `[data-warning="peer_unreachable_at_start"]`)
		wantText(t, standbyTab, `[data-warning="peer_unreachable_at_start"]`, "peer xivo-main was unreachable at start", "make sure it is stopped")
		screenshot(t, standbyTab, "warning-peer-unreachable")
	})

	t.Run("the Main comes back and stays inactive", func(t *testing.T) {
		if err := p.start("xivo-main"); err != nil {
			t.Fatal(err)
		}
		p.waitSettled("xivo-main", node.Inactive)
		login(t, mainTab, p.url("xivo-main"), "admin", adminPassword)
		waitFor(t, mainTab, `[data-warning="stayed_inactive"]`)
		wantText(t, mainTab, `[data-warning="stayed_inactive"]`, "stayed inactive: xivo-standby took over at epoch 2 while this node was down")
		screenshot(t, mainTab, "warning-stayed-inactive")
	})

	t.Run("a service that fails to start puts the node in failed, naming it", func(t *testing.T) {
		if err := os.WriteFile(p.failFlag("xivo-main"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		confirmAction(t, mainTab, "start", "try the main again")
		wantText(t, mainTab, "#peer-check", "xivo-standby is active", "takeover")
		click(t, mainTab, "#force")
		click(t, mainTab, "#confirm-submit")
		waitStatus(t, mainTab, "failed")
		wantText(t, mainTab, "#node-error", "asterisk: exited at once", "unable to open /etc/asterisk/asterisk.conf")
		waitFor(t, mainTab, `[data-flash="error"]`)
		wantText(t, mainTab, "#flash", "Start services failed: asterisk: exited at once")
		states := eval[[]string](t, mainTab, `[...document.querySelectorAll('#services tr[data-service]')].map(tr => tr.dataset.service + '=' + tr.dataset.state)`)
		if len(states) != 3 || states[0] != "consul=running" || states[1] != "asterisk=failed" {
			t.Fatalf("services on the page: %v", states)
		}
		if n := count(t, mainTab, "#start-button:disabled, #stop-button:disabled"); n != 0 {
			t.Fatal("Start or Stop cannot be retried after a failure")
		}
		screenshot(t, mainTab, "failed")
		s, err := p.client("xivo-main").Status(context.Background())
		if err != nil || s.Status != node.Failed || !strings.HasPrefix(s.Error, "asterisk: exited at once") {
			t.Fatalf("API: %s %q %v", s.Status, s.Error, err)
		}
	})

	t.Run("Stop services is retried and ends inactive", func(t *testing.T) {
		os.Remove(p.failFlag("xivo-main"))
		confirmAction(t, mainTab, "stop", "give up")
		click(t, mainTab, "#confirm-submit")
		waitFor(t, mainTab, `#status[data-status="deactivating"] ~ #progress [data-step="consul"][data-phase="current"]`)
		screenshot(t, mainTab, "deactivating")
		waitStatus(t, mainTab, "inactive")
		waitFor(t, mainTab, `[data-flash="ok"]`)
		wantNoProblems(t, mainTab)
		wantNoProblems(t, standbyTab)
	})
}
