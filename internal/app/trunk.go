package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/trunk"
)

// trunkHooks register the xivo node's trunks to every MDS once its
// services are up, and unregister them before they stop (XDS deployment).
type trunkHooks struct {
	c       *trunk.Client
	observe func([]node.Registration)
	// within bounds how long a transition waits for the MDS: registering
	// goes on in the background past it, with retries.
	within time.Duration
}

func (h trunkHooks) AfterStart(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, h.within)
	defer cancel()
	h.c.Register(ctx)
	h.observe(registrations(h.c.States())) // the state the transition ends with
}

func (h trunkHooks) BeforeStop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, h.within)
	defer cancel()
	h.c.Unregister(ctx)
	h.observe(registrations(h.c.States()))
}

// newTrunk builds the trunk client of a xivo node; its changes reach the
// node's status through observe.
func newTrunk(cfg *config.Config, log *slog.Logger, observe func([]node.Registration)) (*trunk.Client, error) {
	t := cfg.Trunk
	localIP := t.LocalIP
	if localIP == "" {
		localIP, _, _ = net.SplitHostPort(cfg.Listen.Address)
	}
	var regs []trunk.Registration
	for _, m := range t.MDS {
		pw, err := m.Password.Read()
		if err != nil {
			return nil, fmt.Errorf("trunk.mds %s: password: %w", m.Name, err)
		}
		regs = append(regs, trunk.Registration{Name: m.Name, Registrar: m.Registrar, Username: m.Username, Password: pw, Expiry: m.Expiry.D()})
	}
	var c *trunk.Client
	var err error
	c, err = trunk.New(trunk.Options{
		Node:          cfg.Name,
		LocalIP:       localIP,
		Registrations: regs,
		Logger:        log,
		OnChange:      func() { observe(registrations(c.States())) },
	})
	if err != nil {
		return nil, err // it says "trunk: ..."
	}
	return c, nil
}

func registrations(states []trunk.State) []node.Registration {
	out := make([]node.Registration, len(states))
	for i, s := range states {
		out[i] = node.Registration{Name: s.Name, Registrar: s.Registrar, State: string(s.State), Expires: s.Expires,
			LastResponse: s.LastResponse, LastError: s.LastError, Since: s.Since}
	}
	return out
}
