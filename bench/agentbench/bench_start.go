package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// startTarget is the most the agent may add to its services' own start.
const startTarget = 100 * time.Millisecond

// benchStart: wall time of POST start and stop on an agent with 13 exec
// services, against the harness launching the same 13 commands itself in
// the same order (fork/exec, then poll the port every 1ms) and killing them
// in reverse order. Agent and own cycles are interleaved so both see the
// same machine. Two variants: sample services with a tcp readiness check,
// and `sleep 3600` with none (the agent's pure overhead).
func benchStart(ctx context.Context, ps *procs, o options) error {
	for _, v := range []struct {
		name string
		kind serviceKind
		ip   string
	}{
		{"start_overhead", sampleServices, "127.0.0.5"},
		{"start_overhead_sleep", sleepServices, "127.0.0.5"},
	} {
		if err := startVariant(ctx, ps, o, v.name, v.kind, v.ip); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	return nil
}

func startVariant(ctx context.Context, ps *procs, o options, name string, kind serviceKind, ip string) error {
	dir := filepath.Join(o.dir, name)
	ports, err := freePorts(ip, numServices)
	if err != nil {
		return err
	}
	a, err := launchAgent(ctx, ps, o.bin, agentSetup{dir: dir, ip: ip, kind: kind, ports: ports})
	if err != nil {
		return err
	}
	defer a.close(ps)
	ownLog := filepath.Join(dir, "own-services.log")

	var agentStart, agentStop, ownStart, ownStop []time.Duration
	for i := range o.cycles + 1 { // cycle 0 warms up and is not counted
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cycle %d: %w", i, err)
		}
		t0 := time.Now()
		if _, err := a.transition(ctx, "start", "active"); err != nil {
			return fmt.Errorf("cycle %d: %w (agent log: %s)", i, err, a.p.tail())
		}
		ds := time.Since(t0)
		t0 = time.Now()
		if _, err := a.transition(ctx, "stop", "inactive"); err != nil {
			return fmt.Errorf("cycle %d: %w (agent log: %s)", i, err, a.p.tail())
		}
		dp := time.Since(t0)
		ownS, ownP, err := ownCycle(ctx, ps, o.bin, kind, ip, ports, ownLog)
		if err != nil {
			return fmt.Errorf("cycle %d, own: %w", i, err)
		}
		if i > 0 {
			agentStart = append(agentStart, ds)
			agentStop = append(agentStop, dp)
			ownStart = append(ownStart, ownS)
			ownStop = append(ownStop, ownP)
		}
	}

	what := "13 x sample-service, ready: tcp"
	if kind == sleepServices {
		what = "13 x sleep 3600, no readiness"
	}
	over50 := pct(agentStart, 50) - pct(ownStart, 50)
	over95 := pct(agentStart, 95) - pct(ownStart, 95)
	ok := over50 < startTarget // p95s of 20 samples are noisy; p50s are compared
	fmt.Printf("%s: agent p50=%s p95=%s | own p50=%s p95=%s | overhead p50=%s p95=%s (%s per service at p50) [%s, %d cycles] (target: overhead p50 < %s) %s\n",
		name, ms(pct(agentStart, 50)), ms(pct(agentStart, 95)), ms(pct(ownStart, 50)), ms(pct(ownStart, 95)),
		ms(over50), ms(over95), ms(over50/numServices), what, len(agentStart), ms(startTarget), passFail(ok))
	stopName := "stop_overhead"
	if kind == sleepServices {
		stopName = "stop_overhead_sleep"
	}
	stopOver := pct(agentStop, 50) - pct(ownStop, 50)
	fmt.Printf("%s: agent p50=%s p95=%s | own p50=%s p95=%s | overhead p50=%s p95=%s [%s] (no target)\n",
		stopName, ms(pct(agentStop, 50)), ms(pct(agentStop, 95)), ms(pct(ownStop, 50)), ms(pct(ownStop, 95)),
		ms(stopOver), ms(pct(agentStop, 95)-pct(ownStop, 95)), what)
	o.report(row{name: name,
		agent:   fmt.Sprintf("start p50 %s p95 %s", ms(pct(agentStart, 50)), ms(pct(agentStart, 95))),
		peer:    fmt.Sprintf("own p50 %s p95 %s", ms(pct(ownStart, 50)), ms(pct(ownStart, 95))),
		compare: fmt.Sprintf("overhead p50 %s p95 %s (%s)", ms(over50), ms(over95), ratio(float64(pct(agentStart, 50)), float64(pct(ownStart, 50)))),
		target:  "overhead p50 < 100ms", result: passFail(ok)})
	o.report(row{name: stopName,
		agent:   fmt.Sprintf("stop p50 %s p95 %s", ms(pct(agentStop, 50)), ms(pct(agentStop, 95))),
		peer:    fmt.Sprintf("own p50 %s p95 %s", ms(pct(ownStop, 50)), ms(pct(ownStop, 95))),
		compare: fmt.Sprintf("overhead p50 %s (%s)", ms(stopOver), ratio(float64(pct(agentStop, 50)), float64(pct(ownStop, 50)))),
		target:  "-", result: "info"})
	return nil
}

// ownCycle starts the 13 commands in order the way the agent should at
// best, then stops them in reverse order, and times both.
func ownCycle(ctx context.Context, ps *procs, bin string, kind serviceKind, ip string, ports []int, logFile string) (start, stop time.Duration, err error) {
	var started []*proc
	defer func() {
		for _, p := range started {
			ps.stop(p, 0)
		}
	}()
	t0 := time.Now()
	for i := range numServices {
		p, err := ps.start(fmt.Sprintf("svc-%02d", i+1), serviceArgv(bin, kind, ip, ports, i), nil, logFile)
		if err != nil {
			return 0, 0, err
		}
		started = append(started, p)
		if kind == sampleServices {
			if err := waitTCP(hostPort(ip, ports[i]), time.Now().Add(10*time.Second), p); err != nil {
				return 0, 0, err
			}
		}
	}
	start = time.Since(t0)
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	t0 = time.Now()
	for i := len(started) - 1; i >= 0; i-- {
		ps.stop(started[i], 2*time.Second)
	}
	stop = time.Since(t0)
	started = nil
	return start, stop, nil
}
