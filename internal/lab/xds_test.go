package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/app"
	"github.com/xivo-resilience/resilience/internal/node"
)

// mdsStatus reads an mds node's status.
func mdsStatus(l *Lab, name string) (app.MDSStatus, error) {
	var s app.MDSStatus
	n, _ := l.Node(name)
	req, _ := http.NewRequest("GET", n.URL+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+l.Info.ReadToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("status %d", resp.StatusCode)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitBound waits until every MDS holds exactly one binding, from node.
func waitBound(t *testing.T, l *Lab, xivo string) {
	t.Helper()
	for _, m := range []string{"mds-1", "mds-2"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := mdsStatus(l, m)
			if err == nil && len(s.Bindings) == 1 && s.Bindings[0].Node == xivo && s.Alarm == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: bindings %+v alarm %q (%v), want one from %s", m, s.Bindings, s.Alarm, err, xivo)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func registered(t *testing.T, s node.Snapshot, want string) {
	t.Helper()
	if len(s.MDS) != 2 {
		t.Fatalf("%s: %d registrations, want 2", s.Name, len(s.MDS))
	}
	for _, r := range s.MDS {
		if r.State != want {
			t.Fatalf("%s: trunk to %s is %s (%s %s), want %s", s.Name, r.Name, r.State, r.LastResponse, r.LastError, want)
		}
	}
}

// TestLab_XDSFailoverAndFailback follows the seed's "XDS Deployment":
// when the Standby takes over it registers to the MDS; when the Main is
// back it registers again. No manual action.
func TestLab_XDSFailoverAndFailback(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	waitBound(t, l, "xivo-main")
	ms, _ := l.Client("xivo-main").Status(ctx)
	registered(t, ms, "registered")

	ss, err := l.Client("xivo-standby").Start(ctx, true, "failover")
	if err != nil {
		t.Fatal(err)
	}
	registered(t, ss, "registered") // Start returns once the MDS answered
	ms, err = l.Client("xivo-main").Stop(ctx, "failover")
	if err != nil {
		t.Fatal(err)
	}
	registered(t, ms, "unregistered")
	waitBound(t, l, "xivo-standby")

	if _, err := l.Client("xivo-standby").Stop(ctx, "failback"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client("xivo-main").Start(ctx, false, "failback"); err != nil {
		t.Fatal(err)
	}
	waitBound(t, l, "xivo-main")
	if h := history(t, l.Client("xivo-main")); !strings.Contains(h, "system trunk unregistered: trunk to mds-1 unregistered") {
		t.Fatalf("main's audit lacks the unregistration:\n%s", h)
	}
}
