package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/xivo-resilience/resilience/internal/service"
)

var _ service.Checker = Ready{}

// Ready is ready when the container runs and its healthcheck passes, or
// runs and has none. It trusts the image's HEALTHCHECK rather than probing
// a port itself because the image's authors know what "serving" means for
// xuc; a container without one is taken at its word once its process runs.
// Each error says why the container is not ready, in the engine's words
// where it has them.
type Ready struct {
	Backend *Backend
}

// Check inspects the container once.
func (r Ready) Check(ctx context.Context) error {
	if r.Backend == nil {
		return errors.New("no docker backend")
	}
	s, err := r.Backend.Inspect(ctx)
	if err != nil {
		return err
	}
	return notReady(r.Backend.opts.Container, s)
}

// notReady says why a container in state s is not ready, nil if it is.
func notReady(name string, s State) error {
	with := func(msg, detail string) error {
		if detail != "" {
			return fmt.Errorf("%s: %s", msg, detail)
		}
		return errors.New(msg)
	}
	switch s.Status {
	case "running":
		switch s.Health {
		case "", "healthy":
			return nil
		case "starting":
			if s.HealthOutput != "" {
				return with("container "+name+" is not healthy yet", s.HealthOutput)
			}
			return fmt.Errorf("container %s is not healthy yet (no health check has passed)", name)
		case "unhealthy":
			if s.HealthOutput != "" {
				return with("container "+name+" is unhealthy", s.HealthOutput)
			}
			return fmt.Errorf("container %s is unhealthy (its health check printed nothing)", name)
		}
		return fmt.Errorf("container %s has health %q", name, s.Health)
	case "exited":
		return with(fmt.Sprintf("container %s exited (code %d)", name, s.ExitCode), s.Error)
	case "created":
		// A start the engine refused leaves the container created, with
		// the reason in Error (exec format error, missing entrypoint...).
		return with("container "+name+" is not running (created)", s.Error)
	case "restarting":
		return fmt.Errorf("container %s is restarting (last exit code %d)", name, s.ExitCode)
	case "removing":
		return fmt.Errorf("container %s is being removed", name)
	case "dead":
		return with("container "+name+" is dead", s.Error)
	}
	return fmt.Errorf("container %s is %s", name, s.Status)
}
