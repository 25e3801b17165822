package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/node"
)

func runStartServices(ctx context.Context, e *env, args []string) error {
	fs := e.flags("start-services", "[--node URL] [--force] [--reason TEXT]")
	var cf clientFlags
	cf.register(fs, e)
	force := fs.Bool("force", false, "start even if the peer is active (takeover: then stop services on the peer)")
	reason := fs.String("reason", "", "why, for the audit log")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	begun := time.Now()
	s, err := c.Start(ctx, *force, *reason)
	return e.transitionOutcome("start", s, err, time.Since(begun))
}

func runStopServices(ctx context.Context, e *env, args []string) error {
	fs := e.flags("stop-services", "[--node URL] [--reason TEXT]")
	var cf clientFlags
	cf.register(fs, e)
	reason := fs.String("reason", "", "why, for the audit log")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	begun := time.Now()
	s, err := c.Stop(ctx, *reason)
	return e.transitionOutcome("stop", s, err, time.Since(begun))
}

// transitionOutcome prints each service's outcome and the node's status.
func (e *env) transitionOutcome(action string, s node.Snapshot, err error, took time.Duration) error {
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) {
		if apiErr.Status != nil && apiErr.Code == "transition_failed" {
			printServices(e.stdout, apiErr.Status.Services)
		}
		if apiErr.Code == "peer_active" {
			return fmt.Errorf("%s (refused: nothing changed)", apiErr.Message)
		}
		return errors.New(apiErr.Message)
	}
	if err != nil {
		return err
	}
	printServices(e.stdout, s.Services)
	fmt.Fprintf(e.stdout, "%s is %s at epoch %d (%s services took %s)\n", s.Name, s.Status, s.Epoch, action, took.Round(time.Millisecond))
	for _, w := range s.Warnings {
		fmt.Fprintf(e.stdout, "! %s\n", w.Message)
	}
	return nil
}
