package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browser tests drive Debian's chromium with chromedp against real agents.
// They save screenshots of the page under artifacts/screenshots/ at the
// root of the repository, for reviewers.

// chromiumPath finds chromium. Outside CI a missing chromium skips the
// browser tests; under CI=true it fails them, as every integration test
// must run there.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed and CI=true: browser tests may not skip (scripts/install-test-deps.sh installs it)")
	}
	t.Skip("chromium is not installed: skipping the browser tests (scripts/install-test-deps.sh installs it)")
	return ""
}

// browserProcess is the one chromium of the test binary, with a fresh
// profile; every test gets its own browser context in it (cookies and
// storage of its own), which is much cheaper than a chromium each.
type browserProcess struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	dir    string
	err    error
}

// shared is closed by TestMain.
var shared browserProcess

func (b *browserProcess) start(exe string) {
	b.dir, b.err = os.MkdirTemp("", "resilience-web-chromium")
	if b.err != nil {
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Background tabs (one per node) must keep their timers and
		// event streams going.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(b.dir),
		chromedp.WindowSize(1366, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b.ctx = ctx
	b.cancel = func() {
		cancel()
		cancelAlloc()
		os.RemoveAll(b.dir)
	}
	b.err = chromedp.Do(ctx)
}

// close ends chromium, if it was started.
func (b *browserProcess) close() {
	if b.cancel != nil {
		b.cancel()
	}
}

// newBrowser returns the first tab of a fresh browser context of the
// shared chromium (started at the first call); it ends with the test.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	shared.once.Do(func() { shared.start(exe) })
	if shared.err != nil {
		t.Fatalf("start chromium: %v", shared.err)
	}
	ctx, cancel := chromedp.NewContext(shared.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, recordProblems); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// problemsJS runs first in every page: it records script errors and
// Content-Security-Policy violations, which wantNoProblems checks.
const problemsJS = `window.__problems = [];
window.addEventListener('error', e => window.__problems.push('error: ' + e.message));
window.addEventListener('unhandledrejection', e => window.__problems.push('rejection: ' + e.reason));
document.addEventListener('securitypolicyviolation', e => window.__problems.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI));`

// recordProblems installs problemsJS in a tab.
var recordProblems = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: problemsJS})
	return err
})

// wantNoProblems fails if the page had a script error or a CSP violation.
func wantNoProblems(t *testing.T, tab context.Context) {
	t.Helper()
	if p := eval[[]string](t, tab, `window.__problems || ['problemsJS did not run']`); len(p) > 0 {
		t.Fatalf("the page reported: %v", p)
	}
}

// newTab opens another tab in the same browser context (the same cookies,
// which are per host: each node has its own address).
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, recordProblems); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// step bounds one browser step.
const step = 30 * time.Second

// do runs browser actions, failing the test on error.
func do(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v (page: %s)", err, pageText(tab))
	}
}

// run runs one browser action that returns a value.
func run[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, step)
	defer cancel()
	begun := time.Now()
	v, err := chromedp.Run(ctx, a)
	slow(t, "step", begun)
	if err != nil {
		t.Fatalf("browser: %v (page: %s)", err, pageText(tab))
	}
	return v
}

// eval evaluates JavaScript in the page, awaiting a promise.
func eval[T any](t *testing.T, tab context.Context, js string) T {
	t.Helper()
	return run(t, tab, chromedp.Evaluate[T](js, func(p *runtime.EvaluateParams) {
		await := true
		p.AwaitPromise = &await
	}))
}

// slow logs a browser step that took long, when BROWSER_TIMING is set:
// to find where a slow run spends its time.
func slow(t *testing.T, what string, begun time.Time) {
	t.Helper()
	if d := time.Since(begun); d > 300*time.Millisecond && os.Getenv("BROWSER_TIMING") != "" {
		t.Logf("slow %s: %s", what, d)
	}
}

// pageText is a short view of the page for failure messages.
func pageText(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + " :: " + document.body.innerText.replace(/\s+/g, " ").slice(0, 1500)`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// The live part of the page is replaced at every event, so the helpers
// read and click through JavaScript, in one step inside the page, rather
// than by DOM node IDs that a swap may invalidate in between.

// text returns the visible text of the first match of a CSS selector.
func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	v := eval[*string](t, tab, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : null; })()`, sel))
	if v == nil {
		t.Fatalf("no %s on the page (page: %s)", sel, pageText(tab))
	}
	return strings.Join(strings.Fields(*v), " ")
}

// wantText fails unless the element's text holds every part.
func wantText(t *testing.T, tab context.Context, sel string, parts ...string) {
	t.Helper()
	got := text(t, tab, sel)
	for _, p := range parts {
		if !strings.Contains(got, p) {
			t.Fatalf("%s: %q lacks %q", sel, got, p)
		}
	}
}

// click clicks the first match of a CSS selector, as a user would (a
// submit button validates and submits its form).
func click(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	ok := eval[bool](t, tab, fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, sel))
	if !ok {
		t.Fatalf("no %s to click (page: %s)", sel, pageText(tab))
	}
}

// waitFor waits until a CSS selector matches a visible element.
func waitFor(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.getClientRects().length > 0; })()`, sel)
	ctx, cancel := context.WithTimeout(tab, step)
	defer cancel()
	begun := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(step))); err != nil {
		t.Fatalf("wait for %s: %v (page: %s)", sel, err, pageText(tab))
	}
	slow(t, "wait for "+sel, begun)
}

// waitStatus waits until the page shows the node settled in status.
func waitStatus(t *testing.T, tab context.Context, status string) {
	t.Helper()
	waitFor(t, tab, fmt.Sprintf(`#status[data-status=%q][data-busy="false"]`, status))
}

// count counts the matches of a CSS selector.
func count(t *testing.T, tab context.Context, sel string) int {
	t.Helper()
	return eval[int](t, tab, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

// navigate loads a URL and returns the HTTP response.
func navigate(t *testing.T, tab context.Context, url string) *network.Response {
	t.Helper()
	return run(t, tab, chromedp.NavigateResponse(url))
}

// login logs in through the form and waits for the page.
func login(t *testing.T, tab context.Context, base, user, password string) {
	t.Helper()
	navigate(t, tab, base+"/")
	waitFor(t, tab, "#login-button")
	do(t, tab,
		chromedp.SetValue(chromedp.CSS("#username"), user),
		chromedp.SetValue(chromedp.CSS("#password"), password),
	)
	resp := submit(t, tab, "#login-button")
	if resp == nil {
		t.Fatalf("log in as %s: no response", user)
	}
	if resp.Status != 200 {
		t.Fatalf("log in as %s: HTTP %d (page: %s)", user, resp.Status, pageText(tab))
	}
	waitFor(t, tab, "#status")
	waitLive(t, tab)
}

// submit clicks a button that posts a form and returns the response of
// the page it leads to.
func submit(t *testing.T, tab context.Context, sel string) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, step)
	defer cancel()
	begun := time.Now()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	slow(t, "submit "+sel, begun)
	if err != nil {
		t.Fatalf("submit %s: %v (page: %s)", sel, err, pageText(tab))
	}
	return resp
}

// waitLive waits until the page's script follows the event stream.
func waitLive(t *testing.T, tab context.Context) {
	t.Helper()
	waitFor(t, tab, "#live-indicator:not(.offline)")
}

// screenshotDir is artifacts/screenshots at the root of the repository.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
	out := filepath.Join(dir, "artifacts", "screenshots")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// screenshot saves the whole page as artifacts/screenshots/NAME.png.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	savePNG(t, name, run(t, tab, chromedp.FullScreenshot(100)))
}

// screenshotView saves what the window shows (a modal dialog over the
// page) as artifacts/screenshots/NAME.png.
func screenshotView(t *testing.T, tab context.Context, name string) {
	t.Helper()
	savePNG(t, name, run(t, tab, chromedp.CaptureScreenshot()))
}

func savePNG(t *testing.T, name string, png []byte) {
	t.Helper()
	file := filepath.Join(screenshotDir(t), name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", file)
}

// watchJS records, from inside the page, every status and service state
// the page shows, and sets a marker that a reload would lose.
const watchJS = `(() => {
  window.__marker = 'same page';
  const seen = window.__seen = {statuses: [], services: {}, progress: 0};
  const push = (a, v) => { if (a[a.length - 1] !== v) a.push(v); };
  const record = () => {
    const st = document.querySelector('#status');
    if (st) push(seen.statuses, st.dataset.status);
    if (document.querySelector('#progress')) seen.progress++;
    document.querySelectorAll('#services tr[data-service]').forEach(tr => {
      push(seen.services[tr.dataset.service] ||= [], tr.dataset.state);
    });
  };
  record();
  new MutationObserver(record).observe(document.getElementById('live'), {childList: true, subtree: true});
  return true;
})()`

// seen is what watchJS recorded.
type seen struct {
	Statuses []string            `json:"statuses"`
	Services map[string][]string `json:"services"`
	Progress int                 `json:"progress"`
	Marker   string              `json:"marker"`
}

func watch(t *testing.T, tab context.Context) {
	t.Helper()
	eval[bool](t, tab, watchJS)
}

func watched(t *testing.T, tab context.Context) seen {
	t.Helper()
	return eval[seen](t, tab, `({...window.__seen, marker: window.__marker || ''})`)
}

// fetchStatus makes a request from inside the page (with its cookies) and
// returns the HTTP status.
func fetchStatus(t *testing.T, tab context.Context, js string) int {
	t.Helper()
	return eval[int](t, tab, js+`.then(r => r.status)`)
}

// retry calls f until it returns nil or within passes; the last error
// fails the test.
func retry(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// a11yJS lists what an accessibility review would flag first: no language,
// form controls without a label, buttons and links without a name,
// duplicate ids, no live region for announcements.
const a11yJS = `(() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(el => {
    if (!el.labels || el.labels.length === 0) problems.push('no label for ' + (el.id || el.name));
  });
  document.querySelectorAll('button, a[href]').forEach(el => {
    if (!(el.textContent || el.getAttribute('aria-label') || '').trim()) problems.push('no name: ' + el.outerHTML.slice(0, 80));
  });
  const ids = {};
  document.querySelectorAll('[id]').forEach(el => {
    if (ids[el.id]) problems.push('duplicate id ' + el.id);
    ids[el.id] = true;
  });
  if (document.querySelector('main') === null) problems.push('no <main>');
  return problems;
})()`

// wantAccessible fails on what a11yJS finds.
func wantAccessible(t *testing.T, tab context.Context) {
	t.Helper()
	if problems := eval[[]string](t, tab, a11yJS); len(problems) > 0 {
		t.Fatalf("accessibility: %v", problems)
	}
}

// wantFocusRings tabs through the first n focusable elements and fails
// unless each shows a focus outline.
func wantFocusRings(t *testing.T, tab context.Context, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		do(t, tab, chromedp.KeyEvent("\t"))
		got := eval[string](t, tab, `(() => { const e = document.activeElement; if (!e || e === document.body) return 'body'; const s = getComputedStyle(e); return s.outlineStyle + ' ' + s.outlineWidth + ' ' + (e.id || e.tagName); })()`)
		if got == "body" {
			return
		}
		if strings.HasPrefix(got, "none") || strings.HasPrefix(got, "solid 0px") {
			t.Fatalf("focus %d has no visible ring: %s", i+1, got)
		}
	}
}
