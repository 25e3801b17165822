package cli

import (
	"errors"
	"flag"

	"github.com/xivo-resilience/resilience/internal/apiclient"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	node string
}

func (c *clientFlags) register(fs *flag.FlagSet, e *env) {
	fs.StringVar(&c.node, "node", e.getenv("RESILIENCE_NODE"), "agent URL (default $RESILIENCE_NODE)")
}

func (c *clientFlags) client(e *env) (*apiclient.Client, error) {
	if c.node == "" {
		return nil, errors.New("no node given: use --node URL or set RESILIENCE_NODE")
	}
	return apiclient.New(c.node, e.getenv("RESILIENCE_TOKEN"), apiclient.Options{CAFile: e.getenv("RESILIENCE_CA")})
}
