package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// memTargetKB: the agent's resident memory, idle with its services active.
const memTargetKB = 30 * 1024

// benchMemory: VmRSS of the agent, Active with 13 sample services and idle
// for 3s (its event stream to the stub peer open, one status request
// served), against bench/peerserver idle for the same 3s after one request.
// Only the agent process is counted, not its services.
func benchMemory(ctx context.Context, ps *procs, o options) error {
	const ip = "127.0.0.8"
	dir := filepath.Join(o.dir, "memory")
	ports, err := freePorts(ip, numServices)
	if err != nil {
		return err
	}
	a, err := launchAgent(ctx, ps, o.bin, agentSetup{dir: dir, ip: ip, kind: sampleServices, ports: ports})
	if err != nil {
		return err
	}
	defer a.close(ps)
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
	pports, err := freePorts(ip, 1)
	if err != nil {
		return err
	}
	peerAddr := hostPort(ip, pports[0])
	peer, err := ps.start("peerserver", []string{o.peerBin, "--listen", peerAddr, "--token-file", tokenFile, "--body", bodyFile}, nil, filepath.Join(dir, "peerserver.log"))
	if err != nil {
		return err
	}
	defer ps.stop(peer, 2*time.Second)
	if err := waitTCP(peerAddr, time.Now().Add(10*time.Second), peer); err != nil {
		return err
	}
	if err := checkSame(ctx, a, "http://"+peerAddr+"/api/v1/status", body); err != nil {
		return err
	}
	a.hc.CloseIdleConnections()

	select { // both idle for 3s
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	st, err := a.status(ctx)
	if err != nil {
		return err
	}
	if st.Status != "active" {
		return fmt.Errorf("agent is %s after 3s idle, want active", st.Status)
	}
	aRSS, aHWM, err := vmRSS(a.p.pid())
	if err != nil {
		return err
	}
	pRSS, pHWM, err := vmRSS(peer.pid())
	if err != nil {
		return err
	}
	ok := aRSS < memTargetKB
	fmt.Printf("idle_memory: agent VmRSS=%.1fMB (VmHWM %.1fMB) | go net/http floor VmRSS=%.1fMB (VmHWM %.1fMB) | agent/floor %s [active, 13 x sample-service, idle 3s] (target < 30MB) %s\n",
		mb(aRSS), mb(aHWM), mb(pRSS), mb(pHWM), ratio(float64(aRSS), float64(pRSS)), passFail(ok))
	o.report(row{name: "idle_memory",
		agent:   fmt.Sprintf("VmRSS %.1fMB", mb(aRSS)),
		peer:    fmt.Sprintf("VmRSS %.1fMB", mb(pRSS)),
		compare: ratio(float64(aRSS), float64(pRSS)),
		target:  "< 30MB", result: passFail(ok)})
	return nil
}

func mb(kb int) float64 { return float64(kb) / 1024 }
