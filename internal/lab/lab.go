// Package lab runs a whole resilient deployment on one machine, on
// loopback: every node is a real agent process (`resilience serve`) with
// a config file written where users can read it, and sample services in
// place of Asterisk. Tests use it too, to drive failovers like the seed.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/node"
)

// DefaultBasePort is the first port of the lab; nodes use the ports after.
const DefaultBasePort = 8440

// Options describe a lab.
type Options struct {
	// Dir receives configs, state, logs and lab.json. Its node folders are
	// emptied at start so that every lab starts the same way.
	Dir string
	// BasePort: node i listens on BasePort+1+i, sample services on
	// BasePort+20 and up.
	BasePort int
	// Binary is the resilience executable to run for every node.
	Binary string
	// AdminPassword is the web login for user admin; random if empty.
	AdminPassword string
	// Services are the sample services of each xivo node, in start order
	// (default: a short XiVO-like list).
	Services []string
	// ReadyDelay makes every sample service wait before it listens, for
	// drills that need a slow start.
	ReadyDelay time.Duration
	// XiVOURL, when set, gives the URL a cc node uses to reach its XiVO
	// (tests put a fault proxy there).
	XiVOURL func(cc, url string) string
}

// Info is lab.json: what scripts need to drive the lab.
type Info struct {
	Nodes []NodeInfo `json:"nodes"`
	Admin struct {
		User     string `json:"user"`
		Password string `json:"password"`
	} `json:"admin"`
	// Token is an operate-scoped bearer token valid on every node.
	Token string `json:"token"`
	// ReadToken is a read-scoped bearer token valid on every node.
	ReadToken string `json:"read_token"`
}

// NodeInfo is one node of lab.json.
type NodeInfo struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Role   string `json:"role"`
	URL    string `json:"url"`
	Config string `json:"config"`
	Log    string `json:"log"`
}

// Lab is a running deployment.
type Lab struct {
	opts  Options
	Info  Info
	procs map[string]*exec.Cmd
	exits map[string]chan struct{}
}

// CCServices mimic the containers of XiVO CC.
var CCServices = []string{"xuc", "xucmgt"}

// DefaultServices mimic the telephony stack `xivo-service` manages.
var DefaultServices = []string{"consul", "xivo-confd", "asterisk", "xivo-agid", "xivo-ctid", "xivo-dird"}

type plan struct {
	name, kind, role, ip string
	// peer is the other xivo of the pair; follows the xivo a cc follows.
	peer, follows string
	port          int
	services      []string
}

// Start writes the configs, starts every node and waits until the Main is
// Active and the Standby Inactive.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if opts.Binary == "" {
		return nil, errors.New("lab: the resilience binary is required")
	}
	if opts.BasePort == 0 {
		opts.BasePort = DefaultBasePort
	}
	if opts.BasePort < 1024 || opts.BasePort > 65000 {
		return nil, fmt.Errorf("lab: base port %d: want 1024 to 65000", opts.BasePort)
	}
	if opts.Services == nil {
		opts.Services = DefaultServices
	}
	var err error
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	if opts.AdminPassword == "" {
		opts.AdminPassword = auth.NewToken()[:16]
	}
	l := &Lab{opts: opts, procs: map[string]*exec.Cmd{}, exits: map[string]chan struct{}{}}
	l.Info.Admin.User = "admin"
	l.Info.Admin.Password = opts.AdminPassword
	l.Info.Token = auth.NewToken()
	l.Info.ReadToken = auth.NewToken()

	plans := []plan{
		{name: "xivo-main", kind: "xivo", role: "main", ip: "127.0.0.2", peer: "xivo-standby", port: opts.BasePort + 1, services: opts.Services},
		{name: "xivo-standby", kind: "xivo", role: "standby", ip: "127.0.0.3", peer: "xivo-main", port: opts.BasePort + 2, services: opts.Services},
		{name: "cc-main", kind: "cc", role: "main", ip: "127.0.0.4", follows: "xivo-main", port: opts.BasePort + 3, services: CCServices},
		{name: "cc-standby", kind: "cc", role: "standby", ip: "127.0.0.5", follows: "xivo-standby", port: opts.BasePort + 4, services: CCServices},
		{name: "mds-1", kind: "mds", ip: "127.0.0.11", port: opts.BasePort + 5},
		{name: "mds-2", kind: "mds", ip: "127.0.0.12", port: opts.BasePort + 6},
		{name: "edge", kind: "edge", ip: "127.0.0.30", port: opts.BasePort + 7},
	}
	if err := l.write(plans); err != nil {
		return nil, err
	}
	// The Standby XiVO first, so that the Main's check of its peer at its
	// first start finds it up and Inactive; the CC after their XiVO.
	for _, name := range []string{"mds-1", "mds-2", "xivo-standby", "xivo-main", "cc-main", "cc-standby", "edge"} {
		if err := l.startNode(name); err != nil {
			l.Stop(context.Background())
			return nil, err
		}
	}
	for _, n := range l.Info.Nodes {
		if n.Kind == "mds" || n.Kind == "edge" {
			continue // no status to wait for: healthy is ready
		}
		want := node.Inactive
		if n.Role == "main" {
			want = node.Active
		}
		if _, err := l.WaitStatus(ctx, n.Name, want, 30*time.Second); err != nil {
			l.Stop(context.Background())
			return nil, err
		}
	}
	return l, nil
}

// write lays out DIR: one config per node, a token file for each peer
// link, lab.json.
func (l *Lab) write(plans []plan) error {
	dir := l.opts.Dir
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return err
	}
	pwHash, err := auth.HashPassword(l.opts.AdminPassword)
	if err != nil {
		return err
	}
	peerToken, ccToken, trunkPassword := auth.NewToken(), auth.NewToken(), auth.NewToken()[:20]
	for file, tok := range map[string]string{"peer.token": peerToken, "cc.token": ccToken, "trunk.password": trunkPassword, "edge.token": l.Info.ReadToken} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", file), []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
	}
	urls := map[string]string{}
	for _, p := range plans {
		urls[p.name] = fmt.Sprintf("http://%s:%d", p.ip, p.port)
	}
	for _, p := range plans {
		if err := os.RemoveAll(filepath.Join(dir, p.name)); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# Written by `resilience lab`: node %s of the lab deployment.\n", p.name)
		fmt.Fprintf(&b, "kind: %s\nname: %s\n", p.kind, p.name)
		if p.role != "" {
			fmt.Fprintf(&b, "role: %s\n", p.role)
		}
		fmt.Fprintf(&b, "state_dir: %s/state\n", p.name)
		fmt.Fprintf(&b, "listen:\n  address: %s:%d\n", p.ip, p.port)
		if p.peer != "" {
			fmt.Fprintf(&b, "peer:\n  name: %s\n  url: %s\n  token:\n    file: secrets/peer.token\n  timeout: 1s\n", p.peer, urls[p.peer])
		}
		if p.follows != "" {
			url := urls[p.follows]
			if l.opts.XiVOURL != nil {
				url = l.opts.XiVOURL(p.name, url)
			}
			fmt.Fprintf(&b, "# Follows its XiVO: services run while %s is Active.\n", p.follows)
			fmt.Fprintf(&b, "xivo:\n  name: %s\n  url: %s\n  token:\n    file: secrets/cc.token\n  poll_interval: 500ms\n", p.follows, url)
		}
		fmt.Fprintf(&b, "auth:\n  users:\n    - name: admin\n      password_hash: %q\n      role: admin\n", pwHash)
		fmt.Fprintf(&b, "  tokens:\n")
		fmt.Fprintf(&b, "    - {name: lab-operator, scope: operate, hash: %q}\n", auth.HashToken(l.Info.Token))
		fmt.Fprintf(&b, "    - {name: lab-reader, scope: read, hash: %q}\n", auth.HashToken(l.Info.ReadToken))
		if p.peer != "" {
			fmt.Fprintf(&b, "    - {name: %s, scope: read, hash: %q}\n", p.peer, auth.HashToken(peerToken))
			fmt.Fprintf(&b, "    - {name: cc, scope: read, hash: %q}\n", auth.HashToken(ccToken))
		}
		if p.kind == "xivo" {
			fmt.Fprintf(&b, "# The XDS deployment: while Active, register the trunk to every MDS.\ntrunk:\n  mds:\n")
			for _, m := range plans {
				if m.kind == "mds" {
					transport := "udp"
					if m.name == "mds-2" {
						transport = "tcp"
					}
					fmt.Fprintf(&b, "    - name: %s\n      registrar: \"sip:%s;transport=%s\"\n      username: xivo-trunk\n      password: {file: secrets/trunk.password}\n      expiry: 120s\n",
						m.name, l.sipAddr(m.ip), transport)
				}
			}
		}
		if p.kind == "mds" {
			fmt.Fprintf(&b, "registrar:\n  udp: %q\n  tcp: %q\n  users:\n    - {username: xivo-trunk, password: {file: secrets/trunk.password}}\n",
				l.sipAddr(p.ip), l.sipAddr(p.ip))
		}
		if p.kind == "edge" {
			l.writeEdge(&b, plans)
		}
		if len(p.services) > 0 {
			fmt.Fprintf(&b, "services:\n")
		}
		for i, svc := range p.services {
			addr := net.JoinHostPort(p.ip, strconv.Itoa(l.opts.BasePort+20+i))
			sip := ""
			if i == l.webService(p.services) && p.kind == "xivo" {
				sip = ", --sip, " + strconv.Quote(l.xivoSIPAddr(p.ip))
			}
			fmt.Fprintf(&b, "  - name: %s\n    exec:\n      command: [%q, sample-service, --listen, %q, --text, %q, --delay, %q%s]\n      stop_grace: 2s\n",
				svc, l.opts.Binary, addr, svc+" on "+p.name, l.opts.ReadyDelay.String(), sip)
			fmt.Fprintf(&b, "    ready:\n      tcp: %q\n    start_timeout: 10s\n", addr)
		}
		file := filepath.Join(dir, p.name+".yaml")
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			return err
		}
		l.Info.Nodes = append(l.Info.Nodes, NodeInfo{
			Name: p.name, Kind: p.kind, Role: p.role, URL: urls[p.name], Config: file,
			Log: filepath.Join(dir, p.name, "agent.log"),
		})
	}
	data, err := json.MarshalIndent(l.Info, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "lab.json"), append(data, '\n'), 0o600)
}

// Node returns a node's entry.
func (l *Lab) Node(name string) (NodeInfo, bool) {
	for _, n := range l.Info.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// writeEdge writes the edge's own sections: the nodes it follows, an HTTP
// route to each side's XiVO and CC, and a SIP route to each XiVO.
func (l *Lab) writeEdge(b *strings.Builder, plans []plan) {
	fmt.Fprintf(b, "# One entry point for users: %s (HTTP) and %s (SIP).\n", l.EdgeHTTP(), l.EdgeSIP())
	fmt.Fprintf(b, "edge:\n  http: %q\n  retry_after: 2s\nnodes:\n", l.EdgeHTTP())
	ips := map[string]string{}
	for _, p := range plans {
		if p.kind == "xivo" || p.kind == "cc" {
			ips[p.name] = p.ip
			fmt.Fprintf(b, "  - {name: %s, url: \"http://%s:%d\", token: {file: secrets/edge.token}}\n", p.name, p.ip, p.port)
		}
	}
	backend := func(side, node string, port int) {
		fmt.Fprintf(b, "    %s: {node: %s, address: %q, health: {path: /, interval: 500ms}}\n", side, node, net.JoinHostPort(ips[node], strconv.Itoa(port)))
	}
	web := l.opts.BasePort + 20 + l.webService(l.opts.Services)
	fmt.Fprintf(b, "routes:\n  - name: cc\n    path_prefix: /xuc\n")
	backend("main", "cc-main", l.opts.BasePort+20)
	backend("standby", "cc-standby", l.opts.BasePort+20)
	fmt.Fprintf(b, "  - name: xivo\n    path_prefix: /\n")
	backend("main", "xivo-main", web)
	backend("standby", "xivo-standby", web)
	fmt.Fprintf(b, "sip:\n  - name: sip\n    listen: %q\n    udp: true\n    tcp: true\n", l.EdgeSIP())
	fmt.Fprintf(b, "    main: {node: xivo-main, address: %q}\n    standby: {node: xivo-standby, address: %q}\n",
		l.xivoSIPAddr(ips["xivo-main"]), l.xivoSIPAddr(ips["xivo-standby"]))
}

// webService is the index of the XiVO service the Edge relays to (and
// that answers SIP): asterisk when the lab has one.
func (l *Lab) webService(services []string) int {
	return max(slices.Index(services, "asterisk"), 0)
}

// xivoSIPAddr is where a XiVO's sample asterisk answers SIP.
func (l *Lab) xivoSIPAddr(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(l.opts.BasePort+45))
}

// EdgeHTTP is the Edge's HTTP entry point, the one address users open.
func (l *Lab) EdgeHTTP() string {
	return net.JoinHostPort("127.0.0.30", strconv.Itoa(l.opts.BasePort+8))
}

// EdgeSIP is the Edge's SIP entry point (UDP and TCP).
func (l *Lab) EdgeSIP() string {
	return net.JoinHostPort("127.0.0.30", strconv.Itoa(l.opts.BasePort+41))
}

// sipAddr is where an MDS's registrar listens (UDP and TCP).
func (l *Lab) sipAddr(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(l.opts.BasePort+40))
}

// ServiceAddr is the address of a node's i-th sample service.
func (l *Lab) ServiceAddr(name string, i int) string {
	n, ok := l.Node(name)
	if !ok {
		panic("lab: no node " + name)
	}
	u, err := url.Parse(n.URL)
	if err != nil {
		panic(err)
	}
	return net.JoinHostPort(u.Hostname(), strconv.Itoa(l.opts.BasePort+20+i))
}

// Client returns an operate-scoped client for a node.
func (l *Lab) Client(name string) *apiclient.Client {
	n, ok := l.Node(name)
	if !ok {
		panic("lab: no node " + name)
	}
	c, err := apiclient.New(n.URL, l.Info.Token, apiclient.Options{})
	if err != nil {
		panic(err)
	}
	return c
}

// startNode starts a node's agent process, appending to its log.
func (l *Lab) startNode(name string) error {
	n, _ := l.Node(name)
	if err := os.MkdirAll(filepath.Dir(n.Log), 0o750); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(l.opts.Binary, "serve", "--config", n.Config)
	cmd.Dir = l.opts.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The agents die with the lab, even if the lab is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	l.procs[name], l.exits[name] = cmd, exited
	return l.waitHealthy(name, exited)
}

func (l *Lab) waitHealthy(name string, exited chan struct{}) error {
	n, _ := l.Node(name)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start: see %s", name, n.Log)
		default:
		}
		resp, err := hc.Get(n.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy after 15s: see %s", name, n.Log)
}

// WaitStatus waits until a node reports status (and no transition runs).
func (l *Lab) WaitStatus(ctx context.Context, name string, want node.Status, within time.Duration) (node.Snapshot, error) {
	c := l.Client(name)
	defer c.CloseIdle()
	deadline := time.Now().Add(within)
	var last node.Snapshot
	var lastErr error
	for time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		last, lastErr = c.Status(rctx)
		cancel()
		if lastErr == nil && last.Status == want && last.Transition == nil {
			return last, nil
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if lastErr != nil {
		return last, fmt.Errorf("%s not %s within %s: %w", name, want, within, lastErr)
	}
	return last, fmt.Errorf("%s not %s within %s: it is %s %s", name, want, within, last.Status, last.Error)
}

// Kill kills a node's agent with SIGKILL, as a crash would; its own child
// services die with it.
func (l *Lab) Kill(name string) error {
	cmd, ok := l.procs[name]
	if !ok {
		return fmt.Errorf("%s is not running", name)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-l.exits[name]
	delete(l.procs, name)
	return nil
}

// Restart starts a killed or stopped node's agent again.
func (l *Lab) Restart(name string) error {
	if _, ok := l.procs[name]; ok {
		return fmt.Errorf("%s is running", name)
	}
	return l.startNode(name)
}

// Stop stops every agent with SIGTERM (SIGKILL after 20s).
func (l *Lab) Stop(ctx context.Context) error {
	for _, cmd := range l.procs {
		cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	for name, cmd := range l.procs {
		select {
		case <-l.exits[name]:
		case <-time.After(20 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-l.exits[name]
			errs = append(errs, fmt.Errorf("%s did not stop within 20s: killed", name))
		}
		delete(l.procs, name)
	}
	return errors.Join(errs...)
}
