// Command resilience is the XiVO resilience manager: the node agent, its
// command-line client and the lab. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/xivo-resilience/resilience/internal/cli"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cli.Version = version
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
