package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/node"
)

// binary is the resilience executable built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "resilience-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "resilience")
	out, err := exec.Command("go", "build", "-race", "-o", binary, "../../cmd/resilience").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build resilience: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startLab starts a lab on free-looking ports; a port clash retries.
func startLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	opts.Binary = binary
	opts.Dir = t.TempDir()
	if opts.Services == nil {
		opts.Services = []string{"consul", "asterisk", "xivo-ctid"}
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		opts.BasePort = 20000 + rand.IntN(40000)
		l, err := Start(context.Background(), opts)
		if err == nil {
			t.Cleanup(func() {
				if err := l.Stop(context.Background()); err != nil {
					t.Error(err)
				}
				if t.Failed() {
					dumpLogs(t, l)
				}
			})
			return l
		}
		lastErr = err
	}
	t.Fatalf("start lab: %v", lastErr)
	return nil
}

func dumpLogs(t *testing.T, l *Lab) {
	for _, n := range l.Info.Nodes {
		b, _ := os.ReadFile(n.Log)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- %s log:\n%s", n.Name, b)
	}
}

func waitStatus(t *testing.T, l *Lab, name string, want node.Status) node.Snapshot {
	t.Helper()
	s, err := l.WaitStatus(context.Background(), name, want, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// answer reads what a sample service says, or the error.
func answer(addr string) (string, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func serviceAddr(l *Lab, nodeName string, i int) string { return l.ServiceAddr(nodeName, i) }

func history(t *testing.T, c *apiclient.Client) string {
	t.Helper()
	h, err := c.History(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := len(h) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "%s %s %s: %s\n", h[i].Actor, h[i].Action, h[i].Result, h[i].Message)
	}
	return b.String()
}

// TestLab_XiVOFailoverAndFailback follows the seed's "XiVO Deployment":
// failover is Start services on the Standby, then Stop services on the
// Main; failback is the reverse.
func TestLab_XiVOFailoverAndFailback(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	main, standby := l.Client("xivo-main"), l.Client("xivo-standby")

	if got, err := answer(serviceAddr(l, "xivo-main", 1)); err != nil || got != "asterisk on xivo-main" {
		t.Fatalf("main's asterisk: %q %v", got, err)
	}
	if _, err := answer(serviceAddr(l, "xivo-standby", 1)); err == nil {
		t.Fatal("standby's asterisk answers while the standby is inactive")
	}

	t.Run("failover refused without force while the main is active", func(t *testing.T) {
		_, err := standby.Start(ctx, false, "failover")
		var apiErr *apiclient.Error
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != 409 || apiErr.Code != "peer_active" {
			t.Fatalf("err = %v, want 409 peer_active", err)
		}
		if !strings.Contains(apiErr.Message, "xivo-main is active") {
			t.Fatalf("message %q should name the active peer", apiErr.Message)
		}
	})

	t.Run("failover: start on the standby (takeover), then stop on the main", func(t *testing.T) {
		s, err := standby.Start(ctx, true, "failover drill")
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != node.Active || s.Epoch != 2 || s.Takeover == nil || s.Takeover.From != "xivo-main" {
			t.Fatalf("standby after start: %s epoch %d takeover %+v", s.Status, s.Epoch, s.Takeover)
		}
		if got, err := answer(serviceAddr(l, "xivo-standby", 1)); err != nil || got != "asterisk on xivo-standby" {
			t.Fatalf("standby's asterisk: %q %v", got, err)
		}
		// The old main learns from its peer watcher that it was superseded.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ms, err := main.Status(ctx)
			if err == nil && hasWarning(ms, node.WarnSuperseded) {
				if w := warning(ms, node.WarnSuperseded); !strings.Contains(w, "xivo-standby took over at epoch 2: stop services here") {
					t.Fatalf("superseded warning %q", w)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("main never showed superseded: %+v %v", ms.Warnings, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		s, err = main.Stop(ctx, "failover drill")
		if err != nil || s.Status != node.Inactive {
			t.Fatalf("main stop: %s %v", s.Status, err)
		}
		if _, err := answer(serviceAddr(l, "xivo-main", 1)); err == nil {
			t.Fatal("main's asterisk still answers after stop")
		}
		if hasWarning(s, node.WarnSuperseded) {
			t.Fatalf("stopped main still superseded: %v", s.Warnings)
		}
	})

	t.Run("failback: stop on the standby, then start on the main", func(t *testing.T) {
		s, err := standby.Stop(ctx, "failback")
		if err != nil || s.Status != node.Inactive {
			t.Fatalf("standby stop: %s %v", s.Status, err)
		}
		s, err = main.Start(ctx, false, "failback")
		if err != nil || s.Status != node.Active || s.Epoch != 3 || s.Takeover != nil {
			t.Fatalf("main start: %s epoch %d %v", s.Status, s.Epoch, err)
		}
		if got, err := answer(serviceAddr(l, "xivo-main", 1)); err != nil || got != "asterisk on xivo-main" {
			t.Fatalf("main's asterisk: %q %v", got, err)
		}
		for _, w := range s.Warnings {
			t.Errorf("unexpected warning after a clean failback: %s", w.Message)
		}
	})

	h := history(t, main)
	for _, want := range []string{"lab-operator stop begun", "lab-operator stop ok", "lab-operator start ok"} {
		if !strings.Contains(h, want) {
			t.Errorf("main's audit log lacks %q:\n%s", want, h)
		}
	}
}

// TestLab_MainCrashStandbyTakesOver: the Main dies while Active, the
// Standby is started (its peer is unreachable), the Main comes back: it
// must stay Inactive and say that the Standby took over.
func TestLab_MainCrashStandbyTakesOver(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	if err := l.Kill("xivo-main"); err != nil {
		t.Fatal(err)
	}
	if _, err := answer(serviceAddr(l, "xivo-main", 1)); err == nil {
		t.Fatal("main's asterisk survived its agent's SIGKILL")
	}
	s, err := l.Client("xivo-standby").Start(ctx, false, "main is down")
	if err != nil || s.Status != node.Active {
		t.Fatalf("standby start: %s %v", s.Status, err)
	}
	if !hasWarning(s, node.WarnPeerUnreachableAtStart) || !strings.Contains(warning(s, node.WarnPeerUnreachableAtStart), "make sure it is stopped") {
		t.Fatalf("standby warnings %v: want peer unreachable at start", s.Warnings)
	}
	if err := l.Restart("xivo-main"); err != nil {
		t.Fatal(err)
	}
	ms := waitSettled(t, l, "xivo-main")
	if ms.Status != node.Inactive {
		t.Fatalf("restarted main is %s, want inactive", ms.Status)
	}
	if w := warning(ms, node.WarnStayedInactive); !strings.Contains(w, "xivo-standby took over at epoch 2") {
		t.Fatalf("main warnings %v: want stayed inactive naming the standby", ms.Warnings)
	}
	if _, err := answer(serviceAddr(l, "xivo-main", 1)); err == nil {
		t.Fatal("main's asterisk runs after the main stayed inactive")
	}
	if h := history(t, l.Client("xivo-main")); !strings.Contains(h, "system recover stayed_inactive") {
		t.Fatalf("audit lacks stayed_inactive:\n%s", h)
	}
}

// waitSettled waits until a node runs no transition (recovery included).
func waitSettled(t *testing.T, l *Lab, name string) node.Snapshot {
	t.Helper()
	c := l.Client(name)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.Status(context.Background())
		if err == nil && s.Transition == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not settle: %+v %v", name, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLab_KilledDuringActivation: SIGKILL while services start, restart,
// and the node converges to Active; the audit log tells the story.
func TestLab_KilledDuringActivation(t *testing.T) {
	l := startLab(t, Options{ReadyDelay: 400 * time.Millisecond})
	ctx := context.Background()
	standby := l.Client("xivo-standby")
	if _, err := l.Client("xivo-main").Stop(ctx, "drill"); err != nil {
		t.Fatal(err)
	}
	go standby.Start(context.Background(), false, "drill")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := standby.Status(ctx)
		if err == nil && s.Status == node.Activating && s.Services[0].State == node.ServiceRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby never half-activated: %+v %v", s, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Kill("xivo-standby"); err != nil {
		t.Fatal(err)
	}
	if err := l.Restart("xivo-standby"); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, l, "xivo-standby", node.Active)
	if s.Epoch != 2 && s.Epoch != 3 {
		t.Fatalf("epoch %d after recovery", s.Epoch)
	}
	for i := range 3 {
		if _, err := answer(serviceAddr(l, "xivo-standby", i)); err != nil {
			t.Fatalf("service %d not serving after recovery: %v", i, err)
		}
	}
	h := history(t, standby)
	for _, want := range []string{"lab-operator start begun", "system recover begun: agent restarted while activating at epoch 2", "system start ok"} {
		if !strings.Contains(h, want) {
			t.Fatalf("audit lacks %q:\n%s", want, h)
		}
	}
}

// TestLab_ServiceDiesWhileActive: a supervised service that dies is
// restarted and the event is recorded.
func TestLab_ServiceDiesWhileActive(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	addr := serviceAddr(l, "xivo-main", 1)
	pid := findPID(t, "asterisk on xivo-main")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := l.Client("xivo-main").Status(ctx)
		got, aerr := answer(addr)
		if err == nil && s.Services[1].Restarts == 1 && s.Services[1].State == node.ServiceRunning && aerr == nil && got == "asterisk on xivo-main" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("asterisk not restarted: %+v %v / %q %v", s.Services, err, got, aerr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newPID := findPID(t, "asterisk on xivo-main"); newPID == pid {
		t.Fatal("same pid after restart")
	}
	h := history(t, l.Client("xivo-main"))
	if !strings.Contains(h, "system service_exited recorded: service asterisk exited") || !strings.Contains(h, "service_restarted") {
		t.Fatalf("audit lacks the exit and restart:\n%s", h)
	}
}

// findPID finds the sample service whose command line carries text.
func findPID(t *testing.T, text string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a == "--text" && i+1 < len(args) && args[i+1] == text && strings.HasPrefix(args[0], binary) {
				return pid
			}
		}
	}
	t.Fatalf("no process for %q", text)
	return 0
}

func hasWarning(s node.Snapshot, code string) bool { return warning(s, code) != "" }

func warning(s node.Snapshot, code string) string {
	for _, w := range s.Warnings {
		if w.Code == code {
			return w.Message
		}
	}
	return ""
}
