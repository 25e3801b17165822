package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// numServices is the size of the service list every benchmark uses.
const numServices = 13

// serviceKind is what the agent's services run.
type serviceKind int

const (
	// sampleServices: `resilience sample-service` with a tcp readiness check.
	sampleServices serviceKind = iota
	// sleepServices: `sleep 3600`, no readiness check: pure overhead.
	sleepServices
)

// agentSetup describes one agent under test.
type agentSetup struct {
	dir      string // config, state and logs
	ip       string
	kind     serviceKind
	ports    []int    // of the sample services
	prefix   []string // e.g. taskset -c 0
	env      []string // e.g. GOMAXPROCS=1
	logLevel string
}

// agent is a running `resilience serve` with a stub peer beside it.
type agent struct {
	p     *proc
	url   string
	token string
	hc    *http.Client
	peer  *stubPeer
	cfg   string
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// serviceArgv is the command line of service i, the same for the agent and
// for the harness's own launches.
func serviceArgv(bin string, kind serviceKind, ip string, ports []int, i int) []string {
	if kind == sleepServices {
		return []string{"sleep", "3600"}
	}
	return []string{bin, "sample-service", "--listen", hostPort(ip, ports[i]), "--text", fmt.Sprintf("bench service %02d", i+1)}
}

func yamlList(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		b, _ := json.Marshal(a) // a JSON string is a YAML double-quoted string
		q[i] = string(b)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// launchAgent writes the config, starts the agent and waits until it
// answers; it is Inactive (role standby, peer Inactive).
func launchAgent(ctx context.Context, ps *procs, bin string, s agentSetup) (*agent, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	peer, err := startStubPeer(s.ip)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(s.ip, 1)
	if err != nil {
		peer.close()
		return nil, err
	}
	a := &agent{
		url:   "http://" + hostPort(s.ip, ports[0]),
		token: newToken(),
		peer:  peer,
		cfg:   filepath.Join(s.dir, "agent.yaml"),
		hc: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, DisableCompression: true},
		},
	}
	peerTokenFile := filepath.Join(s.dir, "peer.token")
	if err := os.WriteFile(peerTokenFile, []byte(newToken()+"\n"), 0o600); err != nil {
		peer.close()
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by bench/agentbench.\nkind: xivo\nname: bench-node\nrole: standby\nmode: manual\n")
	fmt.Fprintf(&b, "state_dir: %q\n", filepath.Join(s.dir, "state"))
	fmt.Fprintf(&b, "listen:\n  address: %q\n", hostPort(s.ip, ports[0]))
	fmt.Fprintf(&b, "peer:\n  name: bench-peer\n  url: %q\n  token:\n    file: %q\n  timeout: 1s\n", peer.url, peerTokenFile)
	fmt.Fprintf(&b, "auth:\n  tokens:\n    - {name: bench, scope: operate, hash: %q}\n", hashToken(a.token))
	fmt.Fprintf(&b, "services:\n")
	for i := range numServices {
		fmt.Fprintf(&b, "  - name: svc-%02d\n    exec:\n      command: %s\n      stop_grace: 2s\n", i+1, yamlList(serviceArgv(bin, s.kind, s.ip, s.ports, i)))
		if s.kind == sampleServices {
			fmt.Fprintf(&b, "    ready:\n      tcp: %q\n", hostPort(s.ip, s.ports[i]))
		}
		fmt.Fprintf(&b, "    start_timeout: 10s\n")
	}
	if s.logLevel != "" {
		fmt.Fprintf(&b, "log:\n  level: %s\n", s.logLevel)
	}
	if err := os.WriteFile(a.cfg, []byte(b.String()), 0o600); err != nil {
		peer.close()
		return nil, err
	}
	argv := append(append([]string{}, s.prefix...), bin, "serve", "--config", a.cfg)
	a.p, err = ps.start("agent", argv, s.env, filepath.Join(s.dir, "agent.log"))
	if err != nil {
		peer.close()
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := a.status(ctx)
		if err == nil && st.Status == "inactive" && st.Transition == nil {
			return a, nil
		}
		if !a.p.alive() {
			peer.close()
			return nil, fmt.Errorf("agent exited at start: %v: %s", a.p.err, a.p.tail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.close(ps)
			return nil, fmt.Errorf("agent not inactive after 15s (last: %+v, %v): %s", st, err, a.p.tail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (a *agent) close(ps *procs) {
	if a.p != nil {
		ps.stop(a.p, 15*time.Second)
	}
	a.hc.CloseIdleConnections()
	a.peer.close()
}

// snapshot is what the benchmarks read of a status.
type snapshot struct {
	Status   string    `json:"status"`
	Revision uint64    `json:"revision"`
	Epoch    uint64    `json:"epoch"`
	Since    time.Time `json:"since"`
	Error    string    `json:"error"`
	// Transition is set while a Start or Stop runs (the agent's own
	// recovery at start-up included).
	Transition *json.RawMessage `json:"transition"`
	Services   []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"services"`
}

func (a *agent) do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return data, resp.StatusCode, err
}

// rawStatus returns the bytes of GET /api/v1/status.
func (a *agent) rawStatus(ctx context.Context) ([]byte, error) {
	data, code, err := a.do(ctx, "GET", "/api/v1/status", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET status: %d %s", code, data)
	}
	return data, nil
}

func (a *agent) status(ctx context.Context) (snapshot, error) {
	var s snapshot
	data, err := a.rawStatus(ctx)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

// transition POSTs start or stop and checks the node ended in want.
func (a *agent) transition(ctx context.Context, action, want string) (snapshot, error) {
	var s snapshot
	data, code, err := a.do(ctx, "POST", "/api/v1/services/"+action, []byte(`{"reason":"bench"}`))
	if err != nil {
		return s, fmt.Errorf("POST %s: %w", action, err)
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("POST %s: %d %.300s", action, code, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("POST %s: %w", action, err)
	}
	if s.Status != want {
		return s, fmt.Errorf("POST %s: status %s, want %s (%s)", action, s.Status, want, s.Error)
	}
	return s, nil
}

// stubPeer stands in for the other node of the pair, which the config
// requires: it is Inactive, so the agent's check before a Start passes at
// once, and it serves an event stream that never changes.
type stubPeer struct {
	url string
	srv *http.Server
}

const stubStatus = `{"name":"bench-peer","kind":"xivo","role":"main","mode":"manual","revision":1,"status":"inactive","desired":"inactive","epoch":0,"since":"2026-01-01T00:00:00Z","services":[],"warnings":[]}`

func startStubPeer(ip string) (*stubPeer, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, stubStatus)
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		io.WriteString(w, "retry: 1000\n\nevent: status\ndata: "+stubStatus+"\n\n")
		rc.Flush()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
					return
				}
				rc.Flush()
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return &stubPeer{url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (s *stubPeer) close() { s.srv.Close() }
