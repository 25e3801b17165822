package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// load sends GETs through the Edge until stop, bounded in count and time,
// and counts the answers by body (or error).
type load struct {
	mu     sync.Mutex
	counts map[string]int
	n      atomic.Int64
	stop   chan struct{}
	done   chan struct{}
}

func startLoad(url string, clients int) *load {
	ld := &load{counts: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil}}
			defer c.CloseIdleConnections()
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				select {
				case <-ld.stop:
					return
				default:
				}
				key := ""
				resp, err := c.Get(url)
				if err != nil {
					key = "error"
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					key = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
					if resp.StatusCode == 503 {
						key = "503"
					}
				}
				ld.n.Add(1)
				ld.mu.Lock()
				ld.counts[key]++
				ld.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	go func() { wg.Wait(); close(ld.done) }()
	return ld
}

func (ld *load) finish() map[string]int {
	close(ld.stop)
	<-ld.done
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.counts
}

// edgeAnswers waits until a GET through the Edge answers want.
func edgeAnswers(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = answer(strings.TrimPrefix(url, "http://")); err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the Edge answers %q (%v), want %q", got, err, want)
}

// sipOptions sends one OPTIONS over UDP and returns who answered.
func sipOptions(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%d\r\nFrom: <sip:test@%s>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: %d@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		addr, local, time.Now().UnixNano(), local, addr, time.Now().UnixNano())
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(buf[:n]), "\r\n") {
		if v, ok := strings.CutPrefix(l, "X-Answered-By: "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no X-Answered-By in %q", buf[:n])
}

func sipAnswersFrom(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = sipOptions(addr); err == nil && got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("SIP through the Edge answered by %q (%v), want %q", got, err, want)
}

// TestLab_EdgeFollowsFailover follows the seed's "Edge Deployment": one
// address for users, relayed to whichever side is Active, under a
// continuous load, for the planned switch (Start on the Standby, then Stop
// on the Main) and the failback.
func TestLab_EdgeFollowsFailover(t *testing.T) {
	l := startLab(t, Options{})
	ctx := context.Background()
	web := "http://" + l.EdgeHTTP() + "/"
	edgeAnswers(t, web, "asterisk on xivo-main")
	edgeAnswers(t, "http://"+l.EdgeHTTP()+"/xuc", "xuc on cc-main")
	sipAnswersFrom(t, l.EdgeSIP(), "asterisk on xivo-main")

	ld := startLoad(web, 4)
	time.Sleep(200 * time.Millisecond)
	if _, err := l.Client("xivo-standby").Start(ctx, true, "planned failover"); err != nil {
		t.Fatal(err)
	}
	edgeAnswers(t, web, "asterisk on xivo-standby")
	if _, err := l.Client("xivo-main").Stop(ctx, "planned failover"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	counts := ld.finish()
	t.Logf("requests during the planned switch: %v", counts)
	for k, n := range counts {
		if k != "200 asterisk on xivo-main" && k != "200 asterisk on xivo-standby" {
			t.Errorf("%d requests answered %q during a planned switch, want none failed", n, k)
		}
	}
	if counts["200 asterisk on xivo-standby"] == 0 {
		t.Error("no request reached the standby")
	}
	edgeAnswers(t, "http://"+l.EdgeHTTP()+"/xuc", "xuc on cc-standby")
	sipAnswersFrom(t, l.EdgeSIP(), "asterisk on xivo-standby")

	// Failback: Stop on the Standby, then Start on the Main; in between
	// nobody serves and the Edge says so.
	if _, err := l.Client("xivo-standby").Stop(ctx, "failback"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(web)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("with no side Active: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if _, err := l.Client("xivo-main").Start(ctx, false, "failback"); err != nil {
		t.Fatal(err)
	}
	edgeAnswers(t, web, "asterisk on xivo-main")
	sipAnswersFrom(t, l.EdgeSIP(), "asterisk on xivo-main")
}

// TestLab_EdgeUnplannedFailover: the Main's agent and services die; the
// Edge stops sending users there and shows its maintenance page; the
// operator starts the Standby (its peer is unreachable) and the traffic
// flows to it through the same address.
func TestLab_EdgeUnplannedFailover(t *testing.T) {
	l := startLab(t, Options{})
	web := "http://" + l.EdgeHTTP() + "/"
	edgeAnswers(t, web, "asterisk on xivo-main")
	ld := startLoad(web, 2)
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	if err := l.Kill("xivo-main"); err != nil {
		t.Fatal(err)
	}
	edgeStatus(t, web, 503, 10*time.Second)
	t.Logf("maintenance page %s after the Main died", time.Since(killed).Round(time.Millisecond))
	if _, err := l.Client("xivo-standby").Start(context.Background(), false, "main died"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	edgeAnswers(t, web, "asterisk on xivo-standby")
	t.Logf("standby served %s after its Start services returned", time.Since(started).Round(time.Millisecond))
	counts := ld.finish()
	t.Logf("requests during the unplanned switch: %v", counts)
	for k, n := range counts {
		switch {
		case k == "200 asterisk on xivo-main", k == "200 asterisk on xivo-standby", k == "503":
		case strings.HasPrefix(k, "502 "):
			// A request in flight when the Main died: answered, not reset.
		default:
			t.Errorf("%d requests answered %q: want only answers and maintenance pages, no hung or reset connections", n, k)
		}
	}
}

// edgeStatus waits until the Edge answers with code.
func edgeStatus(t *testing.T, url string, code int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == code {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the Edge never answered %d within %s", code, within)
}

// need returns the path of a peer tool; under CI=true a missing one fails
// the test, elsewhere it skips it.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (scripts/install-test-deps.sh installs it)", tool)
		}
		t.Skipf("%s not installed: %v", tool, err)
	}
	return p
}

// sippOptions sends one OPTIONS with SIPp over transport ("u1" UDP, "t1"
// TCP) and returns who answered, from SIPp's message trace.
func sippOptions(t *testing.T, addr, transport string) string {
	t.Helper()
	sipp := need(t, "sipp")
	dir := t.TempDir()
	trace := filepath.Join(dir, "messages.log")
	scenario, err := filepath.Abs("testdata/sipp_options.xml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sf", scenario, "-m", "1", "-i", "127.0.0.1", "-p", "0", "-t", transport,
		"-timeout", "5s", "-timeout_error", "-trace_msg", "-message_file", trace, "-nostdin", addr)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sipp OPTIONS to %s over %s: %v\n%.2000s", addr, transport, err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "X-Answered-By: "); ok {
			return v
		}
	}
	t.Fatalf("no X-Answered-By in SIPp's trace:\n%.2000s", b)
	return ""
}

// TestLab_EdgePlannedSwitchUnderWrk: a planned failover (Start on the
// Standby, then Stop on the Main) while wrk loads the Edge: no request
// fails. SIPp's OPTIONS reach the Active XiVO before and after.
func TestLab_EdgePlannedSwitchUnderWrk(t *testing.T) {
	wrk := need(t, "wrk")
	l := startLab(t, Options{})
	ctx := context.Background()
	web := "http://" + l.EdgeHTTP() + "/"
	edgeAnswers(t, web, "asterisk on xivo-main")
	for _, tr := range []string{"u1", "t1"} {
		if who := sippOptions(t, l.EdgeSIP(), tr); who != "asterisk on xivo-main" {
			t.Fatalf("SIPp over %s: answered by %q before the switch", tr, who)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, wrk, "-t1", "-c8", "-d6s", "--latency", web)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := l.Client("xivo-standby").Start(ctx, true, "planned failover under load"); err != nil {
		t.Fatal(err)
	}
	edgeAnswers(t, web, "asterisk on xivo-standby")
	if _, err := l.Client("xivo-main").Stop(ctx, "planned failover under load"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrk: %v\n%s", err, out.String())
	}
	t.Logf("wrk through the Edge during the switch:\n%s", out.String())
	if !strings.Contains(out.String(), "requests in") {
		t.Fatalf("wrk printed no result:\n%s", out.String())
	}
	for _, bad := range []string{"Non-2xx or 3xx responses", "Socket errors"} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("wrk saw failures during a planned switch (%s)", bad)
		}
	}
	for _, tr := range []string{"u1", "t1"} {
		if who := sippOptions(t, l.EdgeSIP(), tr); who != "asterisk on xivo-standby" {
			t.Fatalf("SIPp over %s: answered by %q after the switch", tr, who)
		}
	}
}
