package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Targets of the status benchmark.
const (
	statusRPSTarget = 5000
	statusP99Target = 5 * time.Millisecond
)

// benchStatus: GET /api/v1/status under wrk (one thread, 16 connections,
// on core 1) against the agent pinned to core 0 with GOMAXPROCS=1, and the
// same against bench/peerserver, a minimal net/http server serving the
// agent's own status bytes as a constant behind the same bearer check,
// pinned the same way.
func benchStatus(ctx context.Context, ps *procs, o options) error {
	const ip = "127.0.0.6"
	dir := filepath.Join(o.dir, "status")
	pin := []string{"taskset", "-c", "0"}
	one := []string{"GOMAXPROCS=1"}
	a, err := launchAgent(ctx, ps, o.bin, agentSetup{dir: dir, ip: ip, kind: sleepServices, prefix: pin, env: one})
	if err != nil {
		return err
	}
	defer a.close(ps)
	// Active with 13 services: the status a dependent polls in production.
	if _, err := a.transition(ctx, "start", "active"); err != nil {
		return err
	}
	body, err := a.rawStatus(ctx)
	if err != nil {
		return err
	}
	bodyFile := filepath.Join(dir, "status.json")
	tokenFile := filepath.Join(dir, "bench.token")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(tokenFile, []byte(a.token+"\n"), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(ip, 1)
	if err != nil {
		return err
	}
	peerAddr := hostPort(ip, ports[0])
	pargv := append(append([]string{}, pin...), o.peerBin, "--listen", peerAddr, "--token-file", tokenFile, "--body", bodyFile)
	peer, err := ps.start("peerserver", pargv, one, filepath.Join(dir, "peerserver.log"))
	if err != nil {
		return err
	}
	defer ps.stop(peer, 2*time.Second)
	if err := waitTCP(peerAddr, time.Now().Add(10*time.Second), peer); err != nil {
		return err
	}
	peerURL := "http://" + peerAddr + "/api/v1/status"
	if err := checkSame(ctx, a, peerURL, body); err != nil {
		return err
	}

	agentRes, err := runWrk(ctx, o, a.url+"/api/v1/status", a.token, a.p.pid())
	if err != nil {
		return fmt.Errorf("wrk on the agent: %w", err)
	}
	peerRes, err := runWrk(ctx, o, peerURL, a.token, peer.pid())
	if err != nil {
		return fmt.Errorf("wrk on the peer server: %w", err)
	}
	if !a.p.alive() {
		return fmt.Errorf("agent died under load: %s", a.p.tail())
	}
	ok := agentRes.rps >= statusRPSTarget && agentRes.p99 < statusP99Target
	fmt.Printf("status_throughput: agent %.0f req/s p50=%s p99=%s | go net/http floor %.0f req/s p50=%s p99=%s | agent/floor req/s %s, p99 %s [%d-byte body, wrk -t1 -c16 -d%s; others' use of core 0 (server) %.0f%%/%.0f%%, of core 1 (wrk) %.0f%%/%.0f%%] (target >= %d req/s, p99 < %s) %s\n",
		agentRes.rps, ms(agentRes.p50), ms(agentRes.p99), peerRes.rps, ms(peerRes.p50), ms(peerRes.p99),
		ratio(agentRes.rps, peerRes.rps), ratio(float64(agentRes.p99), float64(peerRes.p99)), len(body), o.duration, agentRes.noise, peerRes.noise, agentRes.loadNoise, peerRes.loadNoise,
		statusRPSTarget, ms(statusP99Target), passFail(ok))
	o.report(row{name: "status_throughput",
		agent: fmt.Sprintf("%.0f req/s p99 %s", agentRes.rps, ms(agentRes.p99)),
		peer:  fmt.Sprintf("%.0f req/s p99 %s", peerRes.rps, ms(peerRes.p99)),
		compare: fmt.Sprintf("req/s %s, p99 %s (others' load on cores 0/1: %.0f%%/%.0f%%)", ratio(agentRes.rps, peerRes.rps), ratio(float64(agentRes.p99), float64(peerRes.p99)),
			max(agentRes.noise, peerRes.noise), max(agentRes.loadNoise, peerRes.loadNoise)),
		target: fmt.Sprintf(">= %d req/s, p99 < %s", statusRPSTarget, ms(statusP99Target)), result: passFail(ok)})
	return nil
}

// checkSame makes sure the peer server answers the agent's bytes, and
// refuses a wrong token as the agent does.
func checkSame(ctx context.Context, a *agent, url string, body []byte) error {
	for _, tc := range []struct {
		token string
		code  int
	}{{a.token, 200}, {"wrong", 401}} {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := a.hc.Do(req)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			return fmt.Errorf("peer server: %d, want %d", resp.StatusCode, tc.code)
		}
		if tc.code == 200 && !bytes.Equal(buf.Bytes(), body) {
			return fmt.Errorf("peer server does not serve the agent's status bytes")
		}
	}
	return nil
}

type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	// noise is the share of core 0 used by other processes than the
	// server during the measured run, in percent (-1: unknown).
	noise float64
	// loadNoise is the same for core 1, wrk's.
	loadNoise float64
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors:.*`)
)

// runWrk warms the target up for 1s, then measures it for o.duration,
// wrk pinned to core 1.
func runWrk(ctx context.Context, o options, url, token string, server int) (wrkResult, error) {
	var res wrkResult
	for _, d := range []time.Duration{time.Second, o.duration} {
		noise := startNoise(0, server)
		wctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
		cmd := exec.CommandContext(wctx, "taskset", "-c", "1", o.wrk, "-t1", "-c16", "-d"+secs+"s", "--latency",
			"-H", "Authorization: Bearer "+token, url)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Start()
		if err == nil {
			loadNoise := startNoise(1, 0)
			err = cmd.Wait()
			if st := cmd.ProcessState; st != nil {
				cpu := st.UserTime() + st.SystemTime()
				res.loadNoise = loadNoise.percentExcluding(float64(cpu) / float64(10*time.Millisecond)) // USER_HZ 100
			}
		}
		out := buf.Bytes()
		cancel()
		res.noise = noise.percent()
		if err != nil {
			return res, fmt.Errorf("%v: %s", err, out)
		}
		text := string(out)
		if m := reNon2xx.FindStringSubmatch(text); m != nil {
			return res, fmt.Errorf("%s non-2xx answers:\n%s", m[1], text)
		}
		if m := reSockErr.FindString(text); m != "" && !strings.Contains(m, "connect 0, read 0, write 0, timeout 0") {
			return res, fmt.Errorf("wrk: %s\n%s", m, text)
		}
		m := reRPS.FindStringSubmatch(text)
		if m == nil {
			return res, fmt.Errorf("no Requests/sec in wrk output:\n%s", text)
		}
		res.rps, _ = strconv.ParseFloat(m[1], 64)
		for _, l := range reLatency.FindAllStringSubmatch(text, -1) {
			v, _ := strconv.ParseFloat(l[2], 64)
			unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[l[3]]
			d := time.Duration(v * unit)
			if l[1] == "50" {
				res.p50 = d
			} else {
				res.p99 = d
			}
		}
		if res.p99 == 0 {
			return res, fmt.Errorf("no 99%% latency in wrk output:\n%s", text)
		}
	}
	return res, nil
}
