// Package cli is the resilience command line: one file per subcommand,
// each a FlagSet and a run function. Only this package prints errors for
// people; it returns the exit status to main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Version is stamped at build time by main.
var Version = "dev"

// env is the process environment, replaceable in tests.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

type command struct {
	name    string
	args    string
	summary string
	hidden  bool
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{name: "serve", args: "--config FILE", summary: "run the node agent described by FILE", run: runServe},
		{name: "lab", args: "[--dir DIR] [--base-port N]", summary: "run a whole deployment on loopback", run: runLab},
		{name: "status", args: "[--node URL] [--json]", summary: "show a node's status", run: runStatus},
		{name: "start-services", args: "[--node URL] [--force] [--reason TEXT]", summary: "activate a node (Start services)", run: runStartServices},
		{name: "stop-services", args: "[--node URL] [--reason TEXT]", summary: "deactivate a node (Stop services)", run: runStopServices},
		{name: "history", args: "[--node URL] [--limit N] [--json]", summary: "show a node's audit log, newest first", run: runHistory},
		{name: "check-config", args: "--config FILE", summary: "check a config file and exit", run: runCheckConfig},
		{name: "hash-password", summary: "read a password on stdin, print its hash for the config", run: runHashPassword},
		{name: "hash-token", args: "[--new]", summary: "read a token on stdin (or make one), print its hash for the config", run: runHashToken},
		{name: "version", summary: "print the version", run: runVersion},
		{name: "sample-service", args: "--listen ADDR --text TEXT", summary: "a stand-in service for the lab", hidden: true, run: runSampleService},
	}
}

// Run runs the command line args (without the program name) and returns
// the exit status.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return e.run(ctx, args)
}

func (e *env) run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		e.usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		var ex *exitError
		if errors.As(err, &ex) {
			return ex.code
		}
		fmt.Fprintf(e.stderr, "Error: %s\n", oneLine(err.Error()))
		return 1
	}
	fmt.Fprintf(e.stderr, "Error: unknown command %q (see resilience --help)\n", args[0])
	return 2
}

func (e *env) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: resilience COMMAND [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-16s %-40s %s\n", c.name, c.args, c.summary)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Client commands read the node URL from --node or RESILIENCE_NODE, the bearer")
	fmt.Fprintln(w, "token from RESILIENCE_TOKEN, and a CA file from RESILIENCE_CA (optional).")
}

// errUsage means the flag package already printed what was wrong.
var errUsage = errors.New("usage")

// exitError ends with a status and no further message (already printed).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func (e *env) flags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: resilience %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and refuses stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more)"
	}
	return s
}
