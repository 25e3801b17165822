package lab

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/faultproxy"
	"github.com/xivo-resilience/resilience/internal/node"
)

func ccServes(t *testing.T, l *Lab, name string, want bool) {
	t.Helper()
	for i, svc := range CCServices {
		got, err := answer(l.ServiceAddr(name, i))
		if serves := err == nil && got == svc+" on "+name; serves != want {
			t.Fatalf("%s's %s serving=%v (%q %v), want %v", name, svc, serves, got, err, want)
		}
	}
}

// TestLab_CCFollowsXiVO follows the seed's "CC Deployment": the Standby CC
// starts its services when the Standby XiVO goes Active, the Main CC stops
// them when the Main XiVO goes Inactive, and the reverse on failback.
func TestLab_CCFollowsXiVO(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	ccServes(t, l, "cc-main", true)
	ccServes(t, l, "cc-standby", false)

	if _, err := l.Client("xivo-standby").Start(ctx, true, "failover"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, l, "cc-standby", node.Active)
	if s.Epoch != 2 || s.Followed == nil || s.Followed.Name != "xivo-standby" || s.Followed.Via != "events" {
		t.Fatalf("cc-standby: epoch %d followed %+v", s.Epoch, s.Followed)
	}
	ccServes(t, l, "cc-standby", true)
	if _, err := l.Client("xivo-main").Stop(ctx, "failover"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, "cc-main", node.Inactive)
	ccServes(t, l, "cc-main", false)

	// Failback.
	if _, err := l.Client("xivo-standby").Stop(ctx, "failback"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, "cc-standby", node.Inactive)
	if _, err := l.Client("xivo-main").Start(ctx, false, "failback"); err != nil {
		t.Fatal(err)
	}
	s = waitStatus(t, l, "cc-main", node.Active)
	if s.Epoch != 3 {
		t.Fatalf("cc-main epoch %d, want its XiVO's 3", s.Epoch)
	}
	ccServes(t, l, "cc-main", true)
	ccServes(t, l, "cc-standby", false)
	if h := history(t, l.Client("cc-standby")); !strings.Contains(h, "xivo-standby start ok") || !strings.Contains(h, "xivo-standby stop ok") {
		t.Fatalf("cc-standby's audit should name its XiVO as the actor:\n%s", h)
	}
}

// proxied starts a lab whose cc nodes reach their XiVO through fault
// proxies, returned by cc name.
func proxied(t *testing.T) (*Lab, map[string]*faultproxy.Proxy) {
	t.Helper()
	proxies := map[string]*faultproxy.Proxy{}
	l := startLab(t, Options{XiVOURL: func(cc, xivoURL string) string {
		u, _ := url.Parse(xivoURL)
		p, err := faultproxy.Start(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		proxies[cc] = p
		return p.URL()
	}})
	return l, proxies
}

func TestLab_CCPollFallback(t *testing.T) {
	l, proxies := proxied(t)
	ctx := context.Background()
	proxies["cc-standby"].CutPaths("/api/v1/events")
	if _, err := l.Client("xivo-standby").Start(ctx, true, "failover with the stream cut"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, l, "cc-standby", node.Active)
	if s.Followed == nil || s.Followed.Via != "poll" || s.Followed.Epoch != 2 {
		t.Fatalf("cc-standby followed %+v, want via poll at epoch 2", s.Followed)
	}
	ccServes(t, l, "cc-standby", true)
	proxies["cc-standby"].CutPaths()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := l.Client("cc-standby").Status(ctx)
		if err == nil && s.Followed != nil && s.Followed.Via == "events" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream never came back: %+v %v", s.Followed, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLab_CCKeepsServicesWhileXiVOUnreachable(t *testing.T) {
	l, proxies := proxied(t)
	ctx := context.Background()
	proxies["cc-main"].CutAll(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := l.Client("cc-main").Status(ctx)
		if err == nil && hasWarning(s, node.WarnXiVOUnreachable) {
			if s.Status != node.Active {
				t.Fatalf("cc-main %s while its XiVO is unreachable, want active", s.Status)
			}
			if !strings.Contains(warning(s, node.WarnXiVOUnreachable), "keeping services as they are") {
				t.Fatalf("warning %q", warning(s, node.WarnXiVOUnreachable))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no unreachable warning: %+v %v", s.Warnings, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Then the XiVO's agent itself dies: still nothing changes.
	proxies["cc-main"].CutAll(false)
	if err := l.Kill("xivo-main"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s, err := l.Client("cc-main").Status(ctx)
	if err != nil || s.Status != node.Active || !hasWarning(s, node.WarnXiVOUnreachable) {
		t.Fatalf("cc-main after its XiVO died: %s %v %v", s.Status, s.Warnings, err)
	}
	ccServes(t, l, "cc-main", true)
}

func TestLab_CCKilledDuringChange(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	if err := l.Kill("cc-standby"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client("xivo-standby").Start(ctx, true, "failover while cc-standby is down"); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart("cc-standby"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, l, "cc-standby", node.Active)
	ccServes(t, l, "cc-standby", true)

	// And back, killed in the middle of its own activation's aftermath.
	if err := l.Kill("cc-standby"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client("xivo-standby").Stop(ctx, "failback while cc-standby is down"); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart("cc-standby"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, l, "cc-standby", node.Inactive)
	if s.Desired != node.Inactive {
		t.Fatalf("desired %s", s.Desired)
	}
	ccServes(t, l, "cc-standby", false)
}
