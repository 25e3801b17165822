// Command agentbench measures the node agent (`resilience serve`) against
// a peer measured in the same run: the services' own start time, a minimal
// Go HTTP server, one SSE subscriber alone. It prints ratios, never asserts:
// a missed target is reported as FAIL on the benchmark's line and in the
// results file, and the exit status is non-zero only when a benchmark could
// not run.
//
//	agentbench start  --bin B --dir D [--results F] [--pidfile F]
//	agentbench status --bin B --peer-bin P --dir D ...
//	agentbench sse    --bin B --dir D ...
//	agentbench memory --bin B --peer-bin P --dir D ...
//	agentbench cc     --bin B --dir D ...
//
// Every process it starts is recorded in --pidfile (for the caller's
// cleanup) and killed before it returns, on success, error or signal. All
// traffic is on 127.0.0.5 to 127.0.0.8; every loop is bounded in count and
// by the benchmark's deadline.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	bin      string // the resilience binary
	peerBin  string // bench/peerserver binary
	wrk      string
	dir      string // scratch folder of this benchmark
	results  string // TSV rows for the summary, appended
	pidfile  string // every started pid, appended
	cycles   int
	rounds   int
	subs     int
	duration time.Duration
	timeout  time.Duration
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: agentbench start|status|sse|memory|cc [flags]")
		os.Exit(2)
	}
	name := os.Args[1]
	var o options
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.StringVar(&o.bin, "bin", "/tmp/bench-bin/resilience", "the resilience binary")
	fs.StringVar(&o.peerBin, "peer-bin", "/tmp/bench-bin/peerserver", "the minimal Go HTTP server (bench/peerserver)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "the wrk binary")
	fs.StringVar(&o.dir, "dir", "", "scratch folder (required)")
	fs.StringVar(&o.results, "results", "", "file to append the summary rows to")
	fs.StringVar(&o.pidfile, "pidfile", "", "file to append the pid of every started process to")
	fs.IntVar(&o.cycles, "cycles", 20, "start: start/stop cycles per variant")
	fs.IntVar(&o.rounds, "rounds", 10, "sse: start/stop rounds per subscriber count")
	fs.IntVar(&o.subs, "subscribers", 100, "sse: subscribers of the fan-out run")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "status: wrk duration per target")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of the whole benchmark")
	fs.Parse(os.Args[2:])
	if o.dir == "" {
		fmt.Fprintln(os.Stderr, "agentbench: --dir is required")
		os.Exit(2)
	}
	var err error
	if o.dir, err = filepath.Abs(o.dir); err == nil {
		err = os.MkdirAll(o.dir, 0o700)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
	var run func(context.Context, *procs, options) error
	switch name {
	case "start":
		run = benchStart
	case "status":
		run = benchStatus
	case "sse":
		run = benchSSE
	case "memory":
		run = benchMemory
	case "cc":
		run = benchCC
	default:
		fmt.Fprintf(os.Stderr, "agentbench: unknown benchmark %q\n", name)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	ps := &procs{pidfile: o.pidfile}
	err = run(ctx, ps, o)
	ps.killAll()
	cancel()
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentbench %s: %v\n", name, err)
		if o.results != "" {
			appendRow(o.results, row{name: name, agent: "-", peer: "-", compare: "error: " + oneLine(err.Error()), target: "-", result: "ERROR"})
		}
		os.Exit(1)
	}
}

// row is one line of the summary table.
type row struct {
	name, agent, peer, compare, target, result string
}

func appendRow(file string, r row) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentbench: results:", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.agent, r.peer, r.compare, r.target, r.result)
}

func (o options) report(r row) {
	if o.results != "" {
		appendRow(o.results, r)
	}
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func oneLine(s string) string {
	for i, c := range s {
		if c == '\n' || c == '\t' {
			s = s[:i]
			break
		}
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
