package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs tracks every process the harness starts, so that none outlives it.
type procs struct {
	pidfile string
	mu      sync.Mutex
	live    map[*proc]struct{}
}

// proc is one started process, in its own process group.
type proc struct {
	cmd    *exec.Cmd
	name   string
	log    string
	exited chan struct{}
	err    error
}

// start runs argv with its output in logFile (or discarded when empty).
// The child is in its own process group and gets SIGKILL if the harness
// dies, so a crash of the harness leaves nothing behind.
func (ps *procs) start(name string, argv []string, env []string, logFile string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, name: name, log: logFile, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	ps.mu.Lock()
	if ps.live == nil {
		ps.live = map[*proc]struct{}{}
	}
	ps.live[p] = struct{}{}
	ps.mu.Unlock()
	if ps.pidfile != "" {
		if f, err := os.OpenFile(ps.pidfile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(f, cmd.Process.Pid)
			f.Close()
		}
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process (and its group), waits up to grace,
// then SIGKILLs the group.
func (ps *procs) stop(p *proc, grace time.Duration) {
	if p.alive() {
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.exited
	ps.mu.Lock()
	delete(ps.live, p)
	ps.mu.Unlock()
}

// killAll stops what is left, agents first given a chance to stop their
// own services.
func (ps *procs) killAll() {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); ps.stop(p, 5*time.Second) }()
	}
	wg.Wait()
}

// tail returns the last lines of a process's log, for an error message.
func (p *proc) tail() string {
	if p.log == "" {
		return ""
	}
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// freePorts returns n ports free on ip now, below the kernel's ephemeral
// range (32768 and up by default): a port from that range can be taken
// by any outgoing connection (the harness's own clients) between this
// check and the service's bind, which once failed a run with "address
// already in use". They are held until all n are found so that they
// differ.
func freePorts(ip string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	const lo, hi = 20000, 32000
	var ports []int
	start := lo + rand.IntN(hi-lo)
	for i := 0; i < hi-lo && len(ports) < n; i++ {
		port := lo + (start-lo+i)%(hi-lo)
		ln, err := net.Listen("tcp", hostPort(ip, port))
		if err != nil {
			continue // taken
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("find %d free ports on %s between %d and %d: found %d", n, ip, lo, hi, len(ports))
	}
	return ports, nil
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// waitTCP polls addr every 1ms until it accepts a connection.
func waitTCP(addr string, deadline time.Time, p *proc) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && !p.alive() {
			return fmt.Errorf("%s exited before listening on %s: %v %s", p.name, addr, p.err, p.tail())
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for " + addr)
		}
		time.Sleep(time.Millisecond)
	}
}

// vmRSS reads VmRSS and VmHWM of pid, in kB.
func vmRSS(pid int) (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(f[1])
		case "VmHWM:":
			hwm, _ = strconv.Atoi(f[1])
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// cpuTicks reads the busy and total ticks of one core from /proc/stat.
func cpuTicks(core int) (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	want := "cpu" + strconv.Itoa(core)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != want {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal
		busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		return busy, busy + v[3] + v[4], nil
	}
	return 0, 0, fmt.Errorf("no %s in /proc/stat", want)
}

// procTicks reads the user and system ticks a process has used.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	// f[0] is the state (field 3); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ut + st, nil
}

// coreNoise measures how busy a core is with work other than pid.
type coreNoise struct {
	core, pid          int
	busy0, total0, pt0 uint64
}

func startNoise(core, pid int) *coreNoise {
	n := &coreNoise{core: core, pid: pid}
	n.busy0, n.total0, _ = cpuTicks(core)
	n.pt0, _ = procTicks(pid)
	return n
}

// percent is the share of the core's time used by others since start.
func (n *coreNoise) percent() float64 {
	pt, err := procTicks(n.pid)
	if err != nil {
		return -1
	}
	return n.percentExcluding(float64(pt - n.pt0))
}

// percentExcluding is percent for a process already reaped, whose CPU
// time (in ticks) is known from its rusage.
func (n *coreNoise) percentExcluding(ticks float64) float64 {
	busy, total, err := cpuTicks(n.core)
	if err != nil || total <= n.total0 {
		return -1
	}
	other := float64(busy-n.busy0) - ticks
	return max(0, 100*other/float64(total-n.total0))
}
