package web_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/app"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/web"
)

// The users and token of this package's tests (export_test.go).
const (
	adminPassword  = web.AdminPassword
	viewerPassword = web.ViewerPassword
	opsToken       = web.OpsToken
)

var testUserConfig = web.TestUserConfig

// pair is a Main and a Standby XiVO as real agents (app instances serving
// HTTP on 127.0.0.2 and 127.0.0.3) built from configs this test writes:
// unlike the lab's, they have a viewer, and a service that fails on
// demand. Their services are real child processes.
type pair struct {
	t     *testing.T
	dir   string
	base  int
	nodes map[string]*pairNode
}

type pairNode struct {
	name, role, ip, peer string
	port                 int
	file                 string
	app                  *app.App
	log                  *syncBuffer
}

// syncBuffer collects an agent's log for a failing test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failFlag, when the file exists, makes a node's asterisk fail to start.
func (p *pair) failFlag(name string) string { return filepath.Join(p.dir, name, "fail-asterisk") }

func (p *pair) url(name string) string {
	n := p.nodes[name]
	return fmt.Sprintf("http://%s:%d", n.ip, n.port)
}

// client is an operate-scoped API client for a node.
func (p *pair) client(name string) *apiclient.Client {
	c, err := apiclient.New(p.url(name), opsToken, apiclient.Options{})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(c.CloseIdle)
	return c
}

// startPair writes the configs and starts the Standby, then the Main, on
// random ports; a port clash retries.
func startPair(t *testing.T) *pair {
	t.Helper()
	var lastErr error
	for range 5 {
		p := &pair{t: t, dir: t.TempDir(), base: 20000 + rand.IntN(40000)}
		if err := p.write(); err != nil {
			t.Fatal(err)
		}
		err := p.start("xivo-standby")
		if err == nil {
			err = p.start("xivo-main")
		}
		if err == nil {
			t.Cleanup(func() {
				for _, name := range []string{"xivo-main", "xivo-standby"} {
					p.stop(name)
					if t.Failed() {
						t.Logf("--- %s log:\n%s", name, tail(p.nodes[name].log.String(), 6000))
					}
				}
			})
			p.waitSettled("xivo-main", node.Active)
			p.waitSettled("xivo-standby", node.Inactive)
			return p
		}
		lastErr = err
		p.stop("xivo-main")
		p.stop("xivo-standby")
	}
	t.Fatalf("start the pair: %v", lastErr)
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *pair) write() error {
	peerToken := auth.NewToken()
	tokenFile := filepath.Join(p.dir, "peer.token")
	if err := os.WriteFile(tokenFile, []byte(peerToken+"\n"), 0o600); err != nil {
		return err
	}
	users := testUserConfig()
	p.nodes = map[string]*pairNode{
		"xivo-main":    {name: "xivo-main", role: "main", ip: "127.0.0.2", peer: "xivo-standby", port: p.base},
		"xivo-standby": {name: "xivo-standby", role: "standby", ip: "127.0.0.3", peer: "xivo-main", port: p.base + 1},
	}
	for _, n := range p.nodes {
		peer := p.nodes[n.peer]
		if err := os.MkdirAll(filepath.Join(p.dir, n.name), 0o750); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "kind: xivo\nname: %s\nrole: %s\nmode: manual\nstate_dir: %s/state\n", n.name, n.role, n.name)
		fmt.Fprintf(&b, "listen:\n  address: %s:%d\n", n.ip, n.port)
		fmt.Fprintf(&b, "peer:\n  name: %s\n  url: http://%s:%d\n  token:\n    file: %s\n  timeout: 500ms\n", peer.name, peer.ip, peer.port, tokenFile)
		fmt.Fprintf(&b, "auth:\n  users:\n")
		for _, u := range users {
			fmt.Fprintf(&b, "    - {name: %s, role: %s, password_hash: %q}\n", u.Name, u.Role, u.PasswordHash)
		}
		fmt.Fprintf(&b, "  tokens:\n    - {name: %s, scope: read, hash: %q}\n    - {name: ops, scope: operate, hash: %q}\n",
			peer.name, auth.HashToken(peerToken), auth.HashToken(opsToken))
		b.WriteString("services:\n")
		for _, svc := range []string{"consul", "asterisk", "xivo-ctid"} {
			cmd := `exec sleep 600`
			switch svc {
			case "consul": // slow to stop, so that a Stop can be watched
				cmd = `trap 'sleep 0.7; exit 0' TERM; sleep 600 & wait`
			case "asterisk":
				cmd = fmt.Sprintf(`if [ -e %q ]; then echo "unable to open /etc/asterisk/asterisk.conf: no such file" >&2; exit 1; fi; exec sleep 600`, p.failFlag(n.name))
			}
			fmt.Fprintf(&b, "  - name: %s\n    exec:\n      command: [sh, -c, %q]\n      stop_grace: 2s\n    ready:\n      command: \"sleep 0.3\"\n    start_timeout: 10s\n", svc, cmd)
		}
		n.file = filepath.Join(p.dir, n.name+".yaml")
		if err := os.WriteFile(n.file, []byte(b.String()), 0o600); err != nil {
			return err
		}
		n.log = &syncBuffer{}
	}
	return nil
}

// start starts (or starts again) a node's agent.
func (p *pair) start(name string) error {
	n := p.nodes[name]
	if n.app != nil {
		return fmt.Errorf("%s is running", name)
	}
	cfg, err := config.Load(n.file)
	if err != nil {
		return err
	}
	a, err := app.New(app.Options{Config: cfg, Heartbeat: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		return err
	}
	if err := a.Start(context.Background()); err != nil {
		a.Stop(context.Background())
		return err
	}
	n.app = a
	return nil
}

// stop stops a node's agent and its services, as a shutdown would.
func (p *pair) stop(name string) {
	n := p.nodes[name]
	if n == nil || n.app == nil {
		return
	}
	if err := n.app.Stop(context.Background()); err != nil {
		p.t.Errorf("stop %s: %v", name, err)
	}
	n.app = nil
}

// waitSettled waits until a node is in status with no transition.
func (p *pair) waitSettled(name string, want node.Status) node.Snapshot {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.nodes[name].app.Machine().Snapshot()
		if s.Status == want && s.Transition == nil {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s is %s (transition %v), want %s", name, s.Status, s.Transition, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
