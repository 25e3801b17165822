package web_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xivo-resilience/resilience/internal/lab"
	"github.com/xivo-resilience/resilience/internal/node"
)

// labServices are the lab's sample services here: enough to watch a
// transition go service by service.
var labServices = []string{"consul", "xivo-confd", "asterisk", "xivo-ctid"}

// startLab runs the lab (a Main and a Standby XiVO as real agent
// processes) on random ports; a port clash retries.
func startLab(t *testing.T) *lab.Lab {
	t.Helper()
	opts := lab.Options{Binary: binary(t), Dir: t.TempDir(), Services: labServices, ReadyDelay: 400 * time.Millisecond}
	var lastErr error
	for range 5 {
		opts.BasePort = 20000 + rand.IntN(40000)
		l, err := lab.Start(context.Background(), opts)
		if err == nil {
			t.Cleanup(func() {
				if err := l.Stop(context.Background()); err != nil {
					t.Error(err)
				}
				if t.Failed() {
					for _, n := range l.Info.Nodes {
						b, _ := os.ReadFile(n.Log)
						if len(b) > 6000 {
							b = b[len(b)-6000:]
						}
						t.Logf("--- %s log:\n%s", n.Name, b)
					}
				}
			})
			return l
		}
		lastErr = err
	}
	t.Fatalf("start lab: %v", lastErr)
	return nil
}

// confirmAction presses Start services or Stop services, waits for the
// dialog with its confirmation, and types the reason.
func confirmAction(t *testing.T, tab context.Context, action, reason string) {
	t.Helper()
	click(t, tab, "#"+action+"-button")
	waitFor(t, tab, "#confirm-dialog[open] #confirm-submit")
	do(t, tab, chromedp.SendKeys(chromedp.CSS("#confirm-dialog #reason"), reason))
}

// TestBrowser_LabFailoverAndFailback drives the seed's XiVO failover and
// failback from the page, against the lab's agents as real processes:
// Stop services on the Main, Start services on the Standby, then back
// with a takeover.
func TestBrowser_LabFailoverAndFailback(t *testing.T) {
	chromiumPath(t)
	l := startLab(t)
	browser := newBrowser(t)
	mainNode, _ := l.Node("xivo-main")
	standbyNode, _ := l.Node("xivo-standby")
	mainAPI, standbyAPI := l.Client("xivo-main"), l.Client("xivo-standby")
	t.Cleanup(mainAPI.CloseIdle)
	t.Cleanup(standbyAPI.CloseIdle)
	ctx := context.Background()
	user, password := l.Info.Admin.User, l.Info.Admin.Password

	mainTab := browser
	standbyTab := newTab(t, browser)

	t.Run("log in and read the status", func(t *testing.T) {
		resp := navigate(t, mainTab, mainNode.URL+"/")
		if resp.Status != 200 || !strings.Contains(resp.URL, "/login?next=%2F") {
			t.Fatalf("not logged in: HTTP %d at %s", resp.Status, resp.URL)
		}
		wantText(t, mainTab, "h1", "Log in to xivo-main")
		screenshot(t, mainTab, "login")

		login(t, mainTab, mainNode.URL, user, password)
		wantText(t, mainTab, ".breadcrumb", "Services", "IPBX", "Resilience Management")
		wantText(t, mainTab, "#node-status", "Active")
		wantText(t, mainTab, "#node-role", "Main")
		wantText(t, mainTab, "#node-mode", "Manual")
		wantText(t, mainTab, "#node-epoch", "1")
		wantText(t, mainTab, "#peer", "xivo-standby", "Inactive")
		if n := count(t, mainTab, `#services tr[data-state="running"]`); n != len(labServices) {
			t.Fatalf("%d services running on the page, want %d", n, len(labServices))
		}
		if n := count(t, mainTab, "#start-button:disabled"); n != 1 {
			t.Fatal("Start services is enabled on an active node")
		}
		screenshot(t, mainTab, "active")

		login(t, standbyTab, standbyNode.URL, user, password)
		wantText(t, standbyTab, "#node-status", "Inactive")
		wantText(t, standbyTab, "#node-role", "Standby")
		wantText(t, standbyTab, "#peer", "xivo-main", "Active")
		screenshot(t, standbyTab, "inactive")
	})

	t.Run("failover: Stop services on the Main", func(t *testing.T) {
		watch(t, mainTab)
		confirmAction(t, mainTab, "stop", "failover drill")
		wantText(t, mainTab, "#confirm-dialog", "Stop services on xivo-main?", "becomes Inactive", "no node serves")
		screenshotView(t, mainTab, "confirm-stop")
		click(t, mainTab, "#confirm-submit")
		waitFor(t, mainTab, `[data-flash="ok"]`)
		waitStatus(t, mainTab, "inactive")
		wantText(t, mainTab, "#flash", "Services stopped on xivo-main: inactive at epoch 1.")
		s := watched(t, mainTab)
		if s.Marker != "same page" {
			t.Fatal("the page reloaded")
		}
		for _, svc := range labServices {
			if st := s.Services[svc]; len(st) == 0 || st[len(st)-1] != "stopped" {
				t.Errorf("%s went %v on the page", svc, st)
			}
		}
		got, err := mainAPI.Status(ctx)
		if err != nil || got.Status != node.Inactive || got.Epoch != 1 {
			t.Fatalf("API: %s epoch %d %v", got.Status, got.Epoch, err)
		}
	})

	t.Run("failover: Start services on the Standby, watched live", func(t *testing.T) {
		watch(t, standbyTab)
		confirmAction(t, standbyTab, "start", "failover drill")
		wantText(t, standbyTab, "#peer-check", "xivo-main is inactive", "at epoch 1")
		if n := count(t, standbyTab, "#confirm-dialog #force"); n != 0 {
			t.Fatal("the force choice is offered while the peer is inactive")
		}
		click(t, standbyTab, "#confirm-submit")
		waitFor(t, standbyTab, "#progress")
		if n := count(t, standbyTab, "#start-button:disabled, #stop-button:disabled"); n != 2 {
			t.Fatalf("%d of the buttons disabled during the transition, want 2", n)
		}
		waitFor(t, standbyTab, `#progress .step-done`)
		screenshot(t, standbyTab, "activating")
		waitStatus(t, standbyTab, "active")
		waitFor(t, standbyTab, `[data-flash="ok"]`)
		wantText(t, standbyTab, "#flash", "Services started on xivo-standby: active at epoch 2.")

		s := watched(t, standbyTab)
		if s.Marker != "same page" {
			t.Fatal("the page reloaded")
		}
		if !slices.Contains(s.Statuses, "activating") || s.Statuses[len(s.Statuses)-1] != "active" || s.Progress == 0 {
			t.Fatalf("statuses seen %v, progress %d", s.Statuses, s.Progress)
		}
		for _, svc := range labServices {
			st := s.Services[svc]
			if !slices.Contains(st, "starting") || st[len(st)-1] != "running" {
				t.Errorf("%s went %v on the page, want starting then running", svc, st)
			}
		}
		got, err := standbyAPI.Status(ctx)
		if err != nil || got.Status != node.Active || got.Epoch != 2 || got.Takeover != nil {
			t.Fatalf("API: %s epoch %d takeover %v %v", got.Status, got.Epoch, got.Takeover, err)
		}
		h, err := standbyAPI.History(ctx, 1, 0)
		if err != nil || h[0].Action != "start" || h[0].Result != "ok" || h[0].Actor != user || h[0].Reason != "failover drill" {
			t.Fatalf("audit %+v %v", h, err)
		}
		retry(t, 5*time.Second, func() error {
			if !strings.Contains(text(t, mainTab, "#peer"), "Active") {
				return fmt.Errorf("the Main's page does not show its peer active: %s", text(t, mainTab, "#peer"))
			}
			return nil
		})
	})

	t.Run("failback with a takeover: Start services on the Main while the Standby is active", func(t *testing.T) {
		confirmAction(t, mainTab, "start", "failback")
		wantText(t, mainTab, "#peer-check", "xivo-standby is active", "at epoch 2", "takeover")
		wantText(t, mainTab, "#confirm-submit", "Take over and start services")
		wantAccessible(t, mainTab)
		screenshotView(t, mainTab, "confirm-takeover")
		// The force choice is required: without it the form does not go.
		click(t, mainTab, "#confirm-submit")
		if n := count(t, mainTab, "#confirm-dialog[open]"); n != 1 {
			t.Fatal("the takeover went without the force choice")
		}
		click(t, mainTab, "#force")
		click(t, mainTab, "#confirm-submit")
		waitFor(t, mainTab, "#progress")
		waitStatus(t, mainTab, "active")
		wantText(t, mainTab, "#node-epoch", "3")
		waitFor(t, mainTab, `[data-flash="ok"]`)
		wantText(t, mainTab, "#live", "took over from xivo-standby at epoch 3")

		// The Standby learns from its peer watcher, and its page shows it.
		waitFor(t, standbyTab, `[data-warning="superseded"]`)
		wantText(t, standbyTab, `[data-warning="superseded"]`, "xivo-main took over at epoch 3: stop services here")
		screenshot(t, standbyTab, "warning-superseded")

		confirmAction(t, standbyTab, "stop", "failback")
		click(t, standbyTab, "#confirm-submit")
		waitStatus(t, standbyTab, "inactive")
		if n := count(t, standbyTab, `[data-warning="superseded"]`); n != 0 {
			t.Fatal("still superseded after Stop services")
		}
		got, err := mainAPI.Status(ctx)
		if err != nil || got.Status != node.Active || got.Epoch != 3 || got.Takeover == nil || got.Takeover.From != "xivo-standby" {
			t.Fatalf("API main: %+v %v", got, err)
		}
		got, err = standbyAPI.Status(ctx)
		if err != nil || got.Status != node.Inactive {
			t.Fatalf("API standby: %s %v", got.Status, err)
		}
	})

	t.Run("the history names the user of every action", func(t *testing.T) {
		navigate(t, mainTab, mainNode.URL+"/history")
		waitFor(t, mainTab, ".table-history")
		wantText(t, mainTab, ".breadcrumb", "Resilience Management", "History")
		actors := eval[[]string](t, mainTab, `[...document.querySelectorAll('.table-history tr[data-action="start"], .table-history tr[data-action="stop"]')].map(tr => tr.dataset.actor).filter(a => a !== 'system')`)
		if len(actors) < 4 {
			t.Fatalf("actors of starts and stops %v: want at least 4 by %s", actors, user)
		}
		for _, a := range actors {
			if a != user {
				t.Fatalf("actors %v: want %s for every start and stop asked from the page", actors, user)
			}
		}
		screenshot(t, mainTab, "history")
		wantNoProblems(t, mainTab)
		wantNoProblems(t, standbyTab)
	})

	t.Run("readable on a phone", func(t *testing.T) {
		do(t, mainTab, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
		navigate(t, mainTab, mainNode.URL+"/")
		waitFor(t, mainTab, "#status")
		overflow := eval[bool](t, mainTab, `document.documentElement.scrollWidth > window.innerWidth`)
		if overflow {
			t.Error("the page is wider than a phone's screen")
		}
		screenshotView(t, mainTab, "phone")
		navigate(t, mainTab, mainNode.URL+"/history")
		waitFor(t, mainTab, ".table-history")
		if eval[bool](t, mainTab, `document.documentElement.scrollWidth > window.innerWidth`) {
			t.Error("the history is wider than a phone's screen")
		}
		screenshotView(t, mainTab, "phone-history")
		do(t, mainTab, chromedp.EmulateReset())
	})
}
