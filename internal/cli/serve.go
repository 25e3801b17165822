package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/xivo-resilience/resilience/internal/app"
	"github.com/xivo-resilience/resilience/internal/config"
)

const defaultConfig = "/etc/resilience/resilience.yaml"

func runServe(ctx context.Context, e *env, args []string) error {
	fs := e.flags("serve", "--config FILE")
	path := fs.String("config", defaultConfig, "the node's config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := e.loadConfig(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	a, err := app.New(app.Options{Config: cfg, Logger: log, Version: Version})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		a.Stop(context.Background())
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	stopCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return a.Stop(stopCtx)
}

// loadConfig loads a config; every problem is printed on its own line.
func (e *env) loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, ce := range errs {
			fmt.Fprintf(e.stderr, "Error: %s\n", ce)
		}
		return nil, &exitError{code: 1}
	}
	return cfg, err
}

func newLogger(w io.Writer, c config.Log) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func runCheckConfig(ctx context.Context, e *env, args []string) error {
	fs := e.flags("check-config", "--config FILE")
	path := fs.String("config", defaultConfig, "the config file to check")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := e.loadConfig(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: ok (%s node %s, role %s, %d services)\n", *path, cfg.Kind, cfg.Name, cfg.Role, len(cfg.Services))
	return nil
}
