package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xivo-resilience/resilience/internal/faultproxy"
)

// benchCC measures how fast a cc node follows its XiVO: from the moment
// the XiVO is Active (the "since" of its status) to the CC's first
// service start call (its audit entry "start begun", written right
// before). With the event stream, then with the stream cut by a fault
// proxy so that only polls see the change: the poll run is the peer, the
// way a follower without a stream (the original's cron) would do.
func benchCC(ctx context.Context, ps *procs, o options) error {
	const ip = "127.0.0.9"
	const poll = 500 * time.Millisecond
	xivo, err := launchNode(ctx, ps, o.bin, filepath.Join(o.dir, "xivo"), ip, "xivo", "")
	if err != nil {
		return fmt.Errorf("xivo: %w", err)
	}
	defer xivo.close(ps)
	proxy, err := faultproxy.Start(strings.TrimPrefix(xivo.url, "http://"))
	if err != nil {
		return err
	}
	defer proxy.Close()
	cc, err := launchNode(ctx, ps, o.bin, filepath.Join(o.dir, "cc"), ip, "cc",
		fmt.Sprintf("xivo:\n  name: bench-xivo\n  url: %q\n  token: {file: %q}\n  poll_interval: %s\n",
			proxy.URL(), filepath.Join(o.dir, "xivo", "reader.token"), poll))
	if err != nil {
		return fmt.Errorf("cc: %w", err)
	}
	defer cc.close(ps)

	results := map[string][]time.Duration{}
	for _, variant := range []string{"events", "poll"} {
		if variant == "poll" {
			proxy.CutPaths("/api/v1/events")
		}
		for i := 0; i < o.cycles; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s, err := xivo.transition(ctx, "start", "active")
			if err != nil {
				return err
			}
			begun, err := waitCCStart(ctx, cc, s.Epoch)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", variant, i, err)
			}
			results[variant] = append(results[variant], begun.Sub(s.Since))
			if _, err := xivo.transition(ctx, "stop", "inactive"); err != nil {
				return err
			}
			if err := waitCCStatus(ctx, cc, "inactive"); err != nil {
				return fmt.Errorf("%s round %d: %w", variant, i, err)
			}
		}
	}
	ev, po := results["events"], results["poll"]
	okEv := pct(ev, 50) < 50*time.Millisecond && pct(ev, 99) < 200*time.Millisecond
	okPo := maxOf(po) < poll+100*time.Millisecond
	fmt.Printf("cc_follow: events p50=%s p99=%s max=%s | stream cut (poll %s) p50=%s p99=%s max=%s | events/poll p50 %s (targets: events p50 < 50ms, p99 < 200ms; cut < poll+100ms) %s\n",
		ms(pct(ev, 50)), ms(pct(ev, 99)), ms(maxOf(ev)), poll, ms(pct(po, 50)), ms(pct(po, 99)), ms(maxOf(po)),
		ratio(float64(pct(ev, 50)), float64(pct(po, 50))), passFail(okEv && okPo))
	o.report(row{name: "cc_follow",
		agent:   fmt.Sprintf("events p50 %s p99 %s", ms(pct(ev, 50)), ms(pct(ev, 99))),
		peer:    fmt.Sprintf("stream cut: p50 %s max %s (poll %s)", ms(pct(po, 50)), ms(maxOf(po)), poll),
		compare: "p50 " + ratio(float64(pct(ev, 50)), float64(pct(po, 50))),
		target:  "p50<50ms p99<200ms; cut<poll+100ms", result: passFail(okEv && okPo)})
	return nil
}

// launchNode starts a xivo (standby, no peer) or cc agent with one
// `sleep` service; extra is appended to its config.
func launchNode(ctx context.Context, ps *procs, bin, dir, ip, kind, extra string) (*agent, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(ip, 1)
	if err != nil {
		return nil, err
	}
	reader := newToken()
	if err := os.WriteFile(filepath.Join(dir, "reader.token"), []byte(reader+"\n"), 0o600); err != nil {
		return nil, err
	}
	a := &agent{
		url:   "http://" + hostPort(ip, ports[0]),
		token: newToken(),
		peer:  &stubPeer{srv: &http.Server{}},
		cfg:   filepath.Join(dir, "agent.yaml"),
		hc:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kind: %s\nname: bench-%s\nrole: standby\nstate_dir: %q\n", kind, kind, filepath.Join(dir, "state"))
	fmt.Fprintf(&b, "listen:\n  address: %q\n", hostPort(ip, ports[0]))
	fmt.Fprintf(&b, "auth:\n  tokens:\n    - {name: bench, scope: operate, hash: %q}\n    - {name: reader, scope: read, hash: %q}\n", hashToken(a.token), hashToken(reader))
	fmt.Fprintf(&b, "services:\n  - name: svc\n    exec:\n      command: [sleep, \"3600\"]\n      stop_grace: 1s\n")
	b.WriteString(extra)
	if err := os.WriteFile(a.cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	a.p, err = ps.start(kind, []string{bin, "serve", "--config", a.cfg}, nil, filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	if err := waitCCStatus(ctx, a, "inactive"); err != nil {
		a.close(ps)
		return nil, fmt.Errorf("%w: %s", err, a.p.tail())
	}
	return a, nil
}

// waitCCStart waits for the cc's audit entry of the start that follows
// the XiVO's epoch, and returns its time.
func waitCCStart(ctx context.Context, cc *agent, epoch uint64) (time.Time, error) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		data, code, err := cc.do(ctx, "GET", "/api/v1/history?limit=5", nil)
		if err == nil && code == http.StatusOK {
			var h struct {
				Entries []struct {
					Time   time.Time `json:"time"`
					Action string    `json:"action"`
					Result string    `json:"result"`
					Epoch  uint64    `json:"epoch"`
				} `json:"entries"`
			}
			if err := json.Unmarshal(data, &h); err != nil {
				return time.Time{}, err
			}
			for _, e := range h.Entries {
				if e.Action == "start" && e.Result == "begun" && e.Epoch == epoch {
					return e.Time, nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("the cc never started for epoch %d", epoch)
}

func waitCCStatus(ctx context.Context, a *agent, want string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if s, err := a.status(ctx); err == nil && s.Status == want && s.Transition == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("not %s within 15s", want)
}
