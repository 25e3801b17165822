package app

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/cc"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
)

// newFollower builds a cc node's follower of its XiVO.
func newFollower(f *config.Follow, m *node.Machine, heartbeat time.Duration, log *slog.Logger) (*cc.Follower, error) {
	token, err := f.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("xivo.token: %w", err)
	}
	c, err := apiclient.New(f.URL, token, apiclient.Options{CAFile: f.CAFile})
	if err != nil {
		return nil, fmt.Errorf("xivo: %w", err)
	}
	return cc.New(cc.Options{
		Name:         f.Name,
		XiVO:         c,
		Machine:      m,
		PollInterval: f.PollInterval.D(),
		Timeout:      f.Timeout.D(),
		Idle:         3 * heartbeat,
		Logger:       log,
	})
}
