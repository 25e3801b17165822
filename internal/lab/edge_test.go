package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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
		switch k {
		case "200 asterisk on xivo-main", "200 asterisk on xivo-standby", "503":
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
