// Package app wires one node agent from its config: store, services, node
// machine, peer, HTTP listener. It never touches signals or flags, so tests
// can run an agent inside a test binary.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/cc"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/service"
	"github.com/xivo-resilience/resilience/internal/service/command"
	"github.com/xivo-resilience/resilience/internal/service/docker"
	"github.com/xivo-resilience/resilience/internal/service/exec"
	"github.com/xivo-resilience/resilience/internal/service/ready"
	"github.com/xivo-resilience/resilience/internal/store"
	"github.com/xivo-resilience/resilience/internal/trunk"
	"github.com/xivo-resilience/resilience/internal/web"
)

// Options are what an App needs.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Version is reported in metrics.
	Version string
	// Heartbeat is the event stream's heartbeat (default 2s).
	Heartbeat time.Duration
}

// App is one running node agent.
type App struct {
	cfg       *config.Config
	log       *slog.Logger
	heartbeat time.Duration

	store    *store.Store
	machine  *node.Machine
	procs    []*exec.Backend
	peer     *apiclient.Client
	follower *cc.Follower
	trunk    *trunk.Client
	mds      *mdsNode
	edge     *edgeNode
	handler  http.Handler

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New builds the agent: opens the store and builds the services. It starts
// nothing; Start does.
func New(opts Options) (*App, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("app: a config is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Name)
	a := &App{cfg: cfg, log: log, heartbeat: opts.Heartbeat}
	if a.heartbeat <= 0 {
		a.heartbeat = 2 * time.Second
	}

	tokens, err := auth.NewTokens(cfg.Auth.Tokens)
	if err != nil {
		return nil, err
	}
	if cfg.Peer != nil {
		token, err := cfg.Peer.Token.Read()
		if err != nil {
			return nil, fmt.Errorf("peer.token: %w", err)
		}
		a.peer, err = apiclient.New(cfg.Peer.URL, token, apiclient.Options{CAFile: cfg.Peer.CAFile})
		if err != nil {
			return nil, fmt.Errorf("peer: %w", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "resilience_build_info", Help: "The agent's version.", ConstLabels: prometheus.Labels{"version": opts.Version, "kind": string(cfg.Kind)},
	}, func() float64 { return 1 }))

	st, err := store.Open(cfg.StateDir, store.Options{})
	if err != nil {
		return nil, err
	}
	a.store = st
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	switch cfg.Kind {
	case config.KindMDS, config.KindEdge:
		build := a.buildMDS
		if cfg.Kind == config.KindEdge {
			build = a.buildEdge
		}
		if err := build(tokens, reg, metrics); err != nil {
			st.Close()
			return nil, err
		}
		return a, nil
	}

	var services []node.Service
	for _, sc := range cfg.Services {
		u, err := a.unit(sc)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("service %s: %w", sc.Name, err)
		}
		services = append(services, node.Service{Name: sc.Name, Unit: u})
	}
	nopts := node.Options{
		Name:          cfg.Name,
		Kind:          string(cfg.Kind),
		Role:          string(cfg.Role),
		Mode:          cfg.Mode,
		InitialStatus: node.Status(cfg.InitialStatus),
		Services:      services,
		Store:         st,
		Metrics:       node.NewMetrics(reg),
		Logger:        log,
	}
	if a.peer != nil {
		nopts.Peer = peer{name: cfg.Peer.Name, c: a.peer}
		nopts.PeerTimeout = cfg.Peer.Timeout.D()
	}
	if cfg.XiVO != nil {
		nopts.Follows = cfg.XiVO.Name
	}
	if cfg.Trunk != nil {
		// The machine exists before the client reports any change.
		observe := func(r []node.Registration) { a.machine.ObserveRegistrations(r) }
		a.trunk, err = newTrunk(cfg, log, observe)
		if err != nil {
			st.Close()
			return nil, err
		}
		nopts.Hooks = trunkHooks{c: a.trunk, observe: observe, within: 3 * time.Second}
	}
	a.machine, err = node.New(nopts)
	if err != nil {
		st.Close()
		return nil, err
	}
	if a.trunk != nil {
		a.machine.ObserveRegistrations(registrations(a.trunk.States()))
	}
	if cfg.XiVO != nil {
		if a.follower, err = newFollower(cfg.XiVO, a.machine, a.heartbeat, log); err != nil {
			st.Close()
			return nil, err
		}
	}

	users, err := auth.NewUsers(cfg.Auth.Users)
	if err != nil {
		st.Close()
		return nil, err
	}
	webSrv, err := web.New(web.Options{Machine: a.machine, History: st, Users: users, Secure: cfg.Listen.TLS != nil, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	apiSrv, err := api.New(api.Options{
		Machine:   a.machine,
		History:   st,
		Auth:      api.Chain{api.BearerAuth{Tokens: tokens}, webSrv},
		Metrics:   metrics,
		Logger:    log,
		Heartbeat: a.heartbeat,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	apiSrv.Register(mux)
	webSrv.Register(mux)
	a.handler = mux
	return a, nil
}

// unit builds one service from its config.
func (a *App) unit(sc config.Service) (*service.Unit, error) {
	u := &service.Unit{
		Name:         sc.Name,
		StartTimeout: sc.StartTimeout.D(),
		StopTimeout:  sc.StopTimeout.D(),
	}
	switch {
	case sc.Exec != nil:
		logFile := sc.Exec.LogFile
		if logFile == "" {
			logFile = filepath.Join(a.cfg.StateDir, "logs", sc.Name+".log")
		}
		name := sc.Name
		b := exec.New(exec.Options{
			Name:              sc.Name,
			Command:           sc.Exec.Command,
			Env:               sc.Exec.Env,
			Dir:               sc.Exec.Dir,
			LogFile:           logFile,
			StopGrace:         sc.Exec.StopGrace.D(),
			RestartBackoff:    sc.Exec.RestartBackoff.D(),
			RestartBackoffMax: sc.Exec.RestartBackoffMax.D(),
			OnEvent: func(e exec.Event) {
				// The machine exists before any process can die.
				a.machine.ServiceEvent(name, e.Kind, e.Err)
			},
		})
		a.procs = append(a.procs, b)
		u.Backend = b
	case sc.Command != nil:
		u.Backend = command.New(command.Options{
			Start:   sc.Command.Start,
			Stop:    sc.Command.Stop,
			Status:  sc.Command.Status,
			LogFile: filepath.Join(a.cfg.StateDir, "logs", sc.Name+".log"),
		})
	case sc.Docker != nil:
		b := docker.New(docker.Options{
			Container:   sc.Docker.Container,
			Socket:      sc.Docker.Socket,
			StopTimeout: sc.Docker.StopTimeout.D(),
		})
		u.Backend = b
		if sc.Ready == nil {
			u.Ready = docker.Ready{Backend: b} // running, and healthy if it has a healthcheck
		}
	default:
		return nil, errors.New("no backend")
	}
	if r := sc.Ready; r != nil {
		u.ReadyTimeout = r.Timeout.D()
		u.ReadyInterval = r.Interval.D()
		switch {
		case r.TCP != "":
			u.Ready = ready.TCP{Address: r.TCP}
		case r.HTTP != "":
			u.Ready = ready.HTTP{URL: r.HTTP}
		case r.Command != "":
			u.Ready = ready.Command{Command: r.Command}
		}
	}
	return u, nil
}

// Handler is the agent's HTTP surface, for tests that serve it themselves.
func (a *App) Handler() http.Handler { return a.handler }

// Machine is the node's status machine.
func (a *App) Machine() *node.Machine { return a.machine }

// Start listens, serves, converges the node and starts watching the peer.
func (a *App) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen.Address)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if t := a.cfg.Listen.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen.tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	a.ln = ln
	if a.mds != nil {
		if err := a.mds.reg.Start(ctx); err != nil {
			ln.Close()
			return fmt.Errorf("registrar: %w", err)
		}
		a.mds.publish(a.mds.reg.Bindings())
	} else if a.edge != nil {
		if err := a.edge.e.Start(ctx); err != nil {
			ln.Close()
			return fmt.Errorf("edge: %w", err)
		}
	} else {
		a.machine.Recover() // before serving: nobody sees a status not yet recovered
	}
	ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.srv = &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		// Requests end with the agent: event streams do not end by
		// themselves, and Shutdown would wait for them.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("serve", "err", err)
		}
	}()
	a.log.Info("agent started", "addr", ln.Addr().String(), "tls", a.cfg.Listen.TLS != nil)
	if a.peer != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.watchPeer(ctx)
		}()
	}
	if a.follower != nil {
		a.follower.Start(ctx)
	}
	if a.edge != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.edge.watch(ctx)
		}()
	}
	return nil
}

// Addr is the listener's address, once started.
func (a *App) Addr() string { return a.ln.Addr().String() }

// watchPeer follows the peer's events to show its status; it never starts
// or stops anything.
func (a *App) watchPeer(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		begun := time.Now()
		err := a.peer.Events(ctx, 3*a.heartbeat, func(s node.Snapshot) { a.machine.ObservePeer(s, nil) }, nil)
		if ctx.Err() != nil {
			return
		}
		a.machine.ObservePeer(node.Snapshot{}, err)
		if time.Since(begun) > 10*time.Second {
			backoff = 250 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Stop shuts the agent down: the listener, the machine, then the agent's
// own child processes (they cannot outlive it). The desired status on disk
// is left as it is, so a restarted agent brings them back. Units managed
// elsewhere (command backend) keep running. Safe to call twice.
func (a *App) Stop(ctx context.Context) error {
	var errs []error
	a.once.Do(func() {
		if a.srv != nil {
			a.cancel()
			shutCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := a.srv.Shutdown(shutCtx); err != nil {
				a.srv.Close() // event streams do not end by themselves
			}
			cancel()
			a.wg.Wait()
		}
		if a.follower != nil {
			a.follower.Stop()
		}
		if a.machine != nil {
			errs = append(errs, a.machine.Close(ctx))
		}
		if a.mds != nil {
			errs = append(errs, a.mds.reg.Close())
		}
		if a.edge != nil {
			errs = append(errs, a.edge.e.Close())
		}
		if a.trunk != nil {
			a.trunk.Close()
		}
		for i := len(a.procs) - 1; i >= 0; i-- {
			errs = append(errs, a.procs[i].Stop(ctx))
		}
		if a.peer != nil {
			a.peer.CloseIdle()
		}
		errs = append(errs, a.store.Close())
		a.log.Info("agent stopped")
	})
	return errors.Join(errs...)
}

// peer adapts the peer's API client to node.Peer.
type peer struct {
	name string
	c    *apiclient.Client
}

func (p peer) Name() string { return p.name }

func (p peer) Status(ctx context.Context) (node.Snapshot, error) { return p.c.Status(ctx) }
