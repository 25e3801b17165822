package trunk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Short backoff so retry tests stay quick; the shape (doubling,
	// jitter, cap) is what they check, not the production numbers.
	retryMin = 200 * time.Millisecond
	retryMax = time.Second
	goleak.VerifyTestMain(m)
}

// tWriter sends log lines to t.Log until the test ends; sipgo's timers may
// still log a moment after Close, and t.Log then would panic.
type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newTWriter(t *testing.T) io.Writer {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testSIPLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// statusLog records the sequence of statuses OnChange reports for one MDS.
type statusLog struct {
	mu  sync.Mutex
	c   *Client
	seq map[string][]Status
}

func (l *statusLog) onChange() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return
	}
	for _, st := range l.c.States() {
		s := l.seq[st.Name]
		if len(s) == 0 || s[len(s)-1] != st.State {
			l.seq[st.Name] = append(s, st.State)
		}
	}
}

func (l *statusLog) get(name string) []Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seq[name])
}

// newLoggedClient is newTestClient with OnChange recording statuses.
func newLoggedClient(t *testing.T, mutate func(*Options), regs ...Registration) (*Client, *statusLog) {
	l := &statusLog{seq: map[string][]Status{}}
	c := newTestClient(t, func(o *Options) {
		o.OnChange = l.onChange
		if mutate != nil {
			mutate(o)
		}
	}, regs...)
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
	return c, l
}

func state(t *testing.T, c *Client, name string) State {
	t.Helper()
	for _, st := range c.States() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no registration %q", name)
	return State{}
}

func TestNew(t *testing.T) {
	good := Registration{Name: "mds-1", Registrar: "sip:127.0.0.11:5060", Username: "trunk", Password: "x"}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"ok", func(*Options) {}, ""},
		{"tcp ok", func(o *Options) { o.Registrations[0].Registrar = "sip:127.0.0.11:5060;transport=tcp" }, ""},
		{"no node", func(o *Options) { o.Node = "" }, "node: required"},
		{"bad local ip", func(o *Options) { o.LocalIP = "localhost" }, "local ip"},
		{"no registrations", func(o *Options) { o.Registrations = nil }, "at least one"},
		{"no name", func(o *Options) { o.Registrations[0].Name = "" }, "registrations[0]: name: required"},
		{"no user", func(o *Options) { o.Registrations[0].Username = "" }, "username: required"},
		{"sips", func(o *Options) { o.Registrations[0].Registrar = "sips:127.0.0.11" }, "only sip:"},
		{"tls", func(o *Options) { o.Registrations[0].Registrar = "sip:127.0.0.11;transport=tls" }, "want udp or tcp"},
		{"user in registrar", func(o *Options) { o.Registrations[0].Registrar = "sip:bob@127.0.0.11" }, "want sip:host"},
		{"fractional expiry", func(o *Options) { o.Registrations[0].Expiry = 1500 * time.Millisecond }, "whole number"},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }, "timeout"},
		{"bad port", func(o *Options) { o.Port = 70000 }, "port 70000"},
		{"duplicate", func(o *Options) { o.Registrations = append(o.Registrations, o.Registrations[0]) }, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Node: "xivo-main", LocalIP: "127.0.0.2", Registrations: []Registration{good}}
			tt.mutate(&opts)
			c, err := New(opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if st := c.States()[0]; st.State != Unregistered || st.Name != "mds-1" {
					t.Errorf("initial state %+v", st)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestClient_Register_digest(t *testing.T) {
	tests := []struct {
		name      string
		algorithm string
		proxy     bool
		transport string
	}{
		{"md5", "MD5", false, "udp"},
		{"sha-256", "SHA-256", false, "udp"},
		{"sha-256 proxy 407", "SHA-256", true, "udp"},
		{"sha-256 tcp", "SHA-256", false, "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := startRegistrar(t, "127.0.0.31", tt.transport)
			reg.configure(func(r *testRegistrar) { r.algorithm = tt.algorithm; r.proxyAuth = tt.proxy })
			c := newTestClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret", Expiry: 120 * time.Second})
			if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("Register: %v", err)
			}
			st := state(t, c, "mds-1")
			if st.State != Registered || st.LastResponse != "200 OK" || st.Granted != 120*time.Second || st.LastError != "" {
				t.Fatalf("state %+v", st)
			}
			if left := time.Until(st.Expires); left < 118*time.Second || left > 120*time.Second {
				t.Errorf("expires in %s, want ~120s", left)
			}
			reqs := reg.requests()
			if len(reqs) != 2 || reqs[0].answer/100 != 4 || !reqs[1].authorized || reqs[1].answer != 200 {
				t.Fatalf("registrar saw %+v, want a challenge then an authorized 200", reqs)
			}
			if reqs[0].callID != reqs[1].callID || reqs[1].cseq != reqs[0].cseq+1 {
				t.Errorf("Call-ID/CSeq: %s %d then %s %d; want same Call-ID, next CSeq",
					reqs[0].callID, reqs[0].cseq, reqs[1].callID, reqs[1].cseq)
			}
			if reqs[1].branch == reqs[0].branch {
				t.Error("the authenticated REGISTER reused the branch of the challenged one")
			}
			if !strings.EqualFold(reqs[1].authParams.Algorithm, tt.algorithm) || reqs[1].authParams.Nc != 1 {
				t.Errorf("credentials %+v", reqs[1].authParams)
			}
			if reqs[1].userAgent != "resilience/xivo-main" || reqs[1].node != "xivo-main" {
				t.Errorf("User-Agent %q, X-Resilience-Node %q", reqs[1].userAgent, reqs[1].node)
			}
			if !strings.EqualFold(reqs[1].transport, tt.transport) {
				t.Errorf("transport %s, want %s", reqs[1].transport, tt.transport)
			}
			wantContact := st.Contact
			if !strings.HasPrefix(wantContact, "sip:trunk@127.0.0.2:") ||
				(tt.transport == "tcp") != strings.HasSuffix(wantContact, ";transport=tcp") {
				t.Errorf("contact %q", wantContact)
			}
			if _, ok := reg.binding(reqs[1].contact); !ok || reqs[1].contact != wantContact {
				t.Errorf("registrar holds no binding for %q (sent %q)", wantContact, reqs[1].contact)
			}
		})
	}
}

func TestClient_Register_wrongPassword(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.algorithm = "MD5" })
	c, log := newLoggedClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "wrong"})
	err := c.Register(ctxFor(t, 5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "mds-1") || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Fatalf("Register error = %v, want one naming mds-1 and the 401", err)
	}
	st := state(t, c, "mds-1")
	if st.State != Failed || st.LastResponse != "401 Unauthorized" || !strings.Contains(st.LastError, "refused") {
		t.Fatalf("state %+v", st)
	}
	// One challenge, one answer, then give up for this cycle: no loop.
	if n := len(reg.requests()); n != 2 {
		t.Errorf("registrar saw %d requests in the first cycle, want 2", n)
	}
	// The retry comes after the backoff and fails the same way.
	waitFor(t, 3*time.Second, "a retry", func() bool { return len(reg.requests()) >= 4 })
	if got := log.get("mds-1"); !slices.Equal(got, []Status{Registering, Failed}) {
		t.Errorf("statuses %v, want [registering failed] (no flapping while retrying)", got)
	}
}

func TestClient_Register_intervalTooBrief(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.algorithm = "SHA-256"; r.minExpires = 3; r.expiresHeader = true })
	c := newTestClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret", Expiry: 2 * time.Second})
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Register: %v", err)
	}
	st := state(t, c, "mds-1")
	if st.State != Registered || st.Granted != 3*time.Second {
		t.Fatalf("state %+v, want registered for the 3s of Min-Expires", st)
	}
	reqs := reg.requests()
	var answers []int
	var expires []int
	for _, r := range reqs {
		answers = append(answers, r.answer)
		expires = append(expires, r.expires)
	}
	if !slices.Equal(answers, []int{401, 423, 200}) || !slices.Equal(expires, []int{2, 2, 3}) {
		t.Fatalf("answers %v with expires %v; want 401, 423, 200 asking 2, 2, 3", answers, expires)
	}
	// The refresh (at half of 3s) asks the raised expiry at once: no new 423.
	waitFor(t, 3*time.Second, "a refresh", func() bool { return len(reg.requests()) >= 5 })
	reqs = reg.requests()
	if reqs[3].expires != 3 || reqs[4].answer != 200 {
		t.Errorf("refresh: %+v, want Expires 3 and 200", reqs[3:])
	}
}

// TestClient_refresh checks that the granted expiry, not the asked one,
// rules: the registrar grants 2s of the 300s asked, in the contact's expires
// parameter only, beside a peer's binding, and the client refreshes before
// the 2s are over, in the same Call-ID with growing CSeq.
func TestClient_refresh(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) {
		r.maxExpires = 2
		r.peer = "sip:trunk@127.0.0.3:5060"
	})
	c := newTestClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret", Expiry: 300 * time.Second})
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if st := state(t, c, "mds-1"); st.Granted != 2*time.Second {
		t.Fatalf("granted %s, want 2s (the peer's 999s must not be taken for ours)", st.Granted)
	}
	waitFor(t, 4*time.Second, "three registrations", func() bool { return len(reg.requests()) >= 3 })
	reqs := reg.requests()
	for i := 1; i < 3; i++ {
		gap := reqs[i].at.Sub(reqs[i-1].at)
		if gap < 800*time.Millisecond || gap > 1800*time.Millisecond {
			t.Errorf("refresh %d came %s after the previous one; want about 1s (before the 2s expiry)", i, gap)
		}
		if reqs[i].callID != reqs[0].callID || reqs[i].cseq != reqs[i-1].cseq+1 || reqs[i].expires != 300 {
			t.Errorf("refresh %d: %+v; want same Call-ID, next CSeq, Expires 300", i, reqs[i])
		}
	}
	// The binding never lapsed at the registrar.
	if _, ok := reg.binding(reqs[0].contact); !ok {
		t.Error("binding lapsed")
	}
}

func TestClient_Unregister(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.algorithm = "SHA-256"; r.peer = "sip:trunk@127.0.0.3:5060" })
	c, log := newLoggedClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret"})
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Register: %v", err)
	}
	contact := state(t, c, "mds-1").Contact
	if _, ok := reg.binding(contact); !ok {
		t.Fatal("not bound after Register")
	}
	before := len(reg.requests())
	if err := c.Unregister(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if _, ok := reg.binding(contact); ok {
		t.Error("binding still held after Unregister")
	}
	reqs := reg.requests()[before:]
	if len(reqs) != 2 || reqs[0].expires != 0 || reqs[1].expires != 0 || reqs[1].answer != 200 || !reqs[1].authorized {
		t.Fatalf("unregister requests %+v, want Expires 0 challenged then authorized", reqs)
	}
	if reqs[1].contact != contact {
		t.Errorf("unregistered %q, want our own contact %q (never *)", reqs[1].contact, contact)
	}
	st := state(t, c, "mds-1")
	if st.State != Unregistered || !st.Expires.IsZero() || st.Granted != 0 {
		t.Errorf("state %+v", st)
	}
	want := []Status{Registering, Registered, Unregistering, Unregistered}
	if got := log.get("mds-1"); !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	// No refresh after Unregister.
	time.Sleep(300 * time.Millisecond)
	if n := len(reg.requests()); n != before+2 {
		t.Errorf("%d requests after Unregister", n-before-2)
	}

	// A node that becomes Active again registers again, same Call-ID.
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatalf("Register again: %v", err)
	}
	all := reg.requests()
	if last := all[len(all)-1]; last.callID != all[0].callID || last.cseq <= all[len(all)-3].cseq || last.answer != 200 {
		t.Errorf("re-register %+v", last)
	}
}

// TestClient_retryAfterTimeout: the registrar leaves the first transaction
// unanswered (retransmissions included); the client shows failed with the
// timeout, then retries after the backoff and registers.
func TestClient_retryAfterTimeout(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.drop = 1; r.algorithm = "MD5" })
	// 1.2s leaves the 500ms UDP retransmission 700ms to go out even on a
	// loaded machine.
	c, log := newLoggedClient(t, func(o *Options) { o.Timeout = 1200 * time.Millisecond },
		Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret"})
	start := time.Now()
	err := c.Register(ctxFor(t, 5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Register error = %v, want the timeout", err)
	}
	if d := time.Since(start); d < 1100*time.Millisecond || d > 2500*time.Millisecond {
		t.Errorf("Register returned after %s, want about the 1.2s timeout", d)
	}
	if st := state(t, c, "mds-1"); st.State != Failed || !strings.Contains(st.LastError, "no answer from "+reg.uri()) {
		t.Fatalf("state %+v", st)
	}
	waitFor(t, 3*time.Second, "registered", func() bool { return state(t, c, "mds-1").State == Registered })
	reqs := reg.requests()
	// UDP retransmissions of the dropped request share its branch and CSeq.
	if reqs[0].answer != 0 || len(reqs) < 3 {
		t.Fatalf("requests %+v", reqs)
	}
	var retrans int
	for _, r := range reqs[1:] {
		if r.branch == reqs[0].branch {
			retrans++
			if r.cseq != reqs[0].cseq {
				t.Errorf("retransmission with CSeq %d, want %d", r.cseq, reqs[0].cseq)
			}
		}
	}
	if retrans == 0 {
		t.Error("no UDP retransmission of the unanswered REGISTER")
	}
	last := reqs[len(reqs)-1]
	if last.answer != 200 || last.cseq <= reqs[0].cseq || last.callID != reqs[0].callID {
		t.Errorf("final request %+v", last)
	}
	want := []Status{Registering, Failed, Registered}
	if got := log.get("mds-1"); !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
}

// TestClient_Register_parallel: one MDS of three never answers; Register
// returns after one timeout (not three), the others registered, and the
// error names the silent one.
func TestClient_Register_parallel(t *testing.T) {
	var regs []Registration
	var servers []*testRegistrar
	for i, ip := range []string{"127.0.0.31", "127.0.0.32", "127.0.0.33"} {
		reg := startRegistrar(t, ip, "udp")
		reg.configure(func(r *testRegistrar) { r.algorithm = "SHA-256" })
		servers = append(servers, reg)
		regs = append(regs, Registration{Name: "mds-" + string(rune('1'+i)), Registrar: reg.uri(), Username: "trunk", Password: "s3cret"})
	}
	servers[2].configure(func(r *testRegistrar) { r.drop = 1000 })
	// Sequential attempts would take 3s; parallel ones one timeout.
	c := newTestClient(t, func(o *Options) { o.Timeout = time.Second }, regs...)
	start := time.Now()
	err := c.Register(ctxFor(t, 5*time.Second))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Register took %s, want one timeout", d)
	}
	if err == nil || !strings.Contains(err.Error(), "mds-3") || strings.Contains(err.Error(), "mds-1") {
		t.Fatalf("Register error = %v, want mds-3 only", err)
	}
	for _, name := range []string{"mds-1", "mds-2"} {
		if st := state(t, c, name); st.State != Registered {
			t.Errorf("%s: %+v", name, st)
		}
	}
	// Unregister is parallel too and reports the silent one.
	start = time.Now()
	err = c.Unregister(ctxFor(t, 5*time.Second))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Unregister took %s, want one timeout", d)
	}
	if err == nil || !strings.Contains(err.Error(), "mds-3") {
		t.Fatalf("Unregister error = %v", err)
	}
	if st := state(t, c, "mds-3"); st.State != Failed || !strings.HasPrefix(st.LastError, "unregister: ") {
		t.Errorf("mds-3 %+v", st)
	}
	if st := state(t, c, "mds-1"); st.State != Unregistered {
		t.Errorf("mds-1 %+v", st)
	}
}

func TestClient_Register_contextEnds(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.drop = 1000 })
	c := newTestClient(t, func(o *Options) { o.Timeout = 2 * time.Second },
		Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk"})
	err := c.Register(ctxFor(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Register error = %v, want the context's", err)
	}
	// The attempt goes on in the background; Close cuts it short.
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Close took %s", d)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Register(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v", err)
	}
	if err := c.Unregister(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Unregister after Close = %v", err)
	}
}

// TestClient_answersOptions: the bound contact answers OPTIONS, so a
// registrar that qualifies its contacts keeps the binding.
func TestClient_answersOptions(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	c := newTestClient(t, nil, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk"})
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	var contact sip.Uri
	if err := sip.ParseUri(state(t, c, "mds-1").Contact, &contact); err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(testSIPLog(t))),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(testSIPLog(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	qc, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.31"), sipgo.WithClientLogger(testSIPLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := qc.Do(ctxFor(t, 2*time.Second), sip.NewRequest(sip.OPTIONS, contact))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("OPTIONS answered %s", statusLine(res))
	}
}

func TestClient_neverLogsPassword(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	reg.configure(func(r *testRegistrar) { r.algorithm = "MD5"; r.minExpires = 400 })
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	c := newTestClient(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk", Password: "s3cret"})
	if err := c.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.Unregister(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if buf.Len() == 0 || !strings.Contains(buf.String(), "trunk registered") {
		t.Fatalf("expected registration logs, got %q", buf.String())
	}
	if strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("password in the log:\n%s", buf.String())
	}
}

// TestClient_fixedPort: with a fixed Port the Contact survives a restart,
// so a node that crashed (no Unregister) removes its old binding with the
// next run's Unregister.
func TestClient_fixedPort(t *testing.T) {
	reg := startRegistrar(t, "127.0.0.31", "udp")
	port := freePort(t, "127.0.0.2")
	regs := Registration{Name: "mds-1", Registrar: reg.uri(), Username: "trunk"}
	crashed := newTestClient(t, func(o *Options) { o.Port = port }, regs)
	if err := crashed.Register(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	contact := state(t, crashed, "mds-1").Contact
	if want := "sip:trunk@127.0.0.2:" + strconv.Itoa(port); contact != want {
		t.Fatalf("contact %q, want %q", contact, want)
	}
	if err := crashed.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.binding(contact); !ok {
		t.Fatal("binding gone with the crash")
	}
	next := newTestClient(t, func(o *Options) { o.Port = port }, regs)
	if err := next.Unregister(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.binding(contact); ok {
		t.Error("the old binding survived the next run's Unregister")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestParseChallenge(t *testing.T) {
	res := func(code int, hdrs ...string) *sip.Response {
		r := sip.NewResponse(code, "x")
		for _, h := range hdrs {
			name, value, _ := strings.Cut(h, ": ")
			r.AppendHeader(sip.NewHeader(name, value))
		}
		return r
	}
	tests := []struct {
		name    string
		res     *sip.Response
		wantAlg string
		wantHdr string
		wantErr string
	}{
		{"prefers sha-256", res(401,
			`WWW-Authenticate: Digest realm="r", nonce="1", algorithm=MD5, qop="auth"`,
			`WWW-Authenticate: Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"`), "SHA-256", "Authorization", ""},
		{"no algorithm is md5", res(401, `WWW-Authenticate: Digest realm="r", nonce="1"`), "", "Authorization", ""},
		{"lower case", res(401, `WWW-Authenticate: Digest realm="r", nonce="1", algorithm=sha-256, qop="auth, auth-int"`), "SHA-256", "Authorization", ""},
		{"proxy", res(407, `Proxy-Authenticate: Digest realm="r", nonce="1", algorithm=MD5`), "MD5", "Proxy-Authorization", ""},
		{"missing", res(401), "", "", "without WWW-Authenticate"},
		{"unsupported", res(401, `WWW-Authenticate: Digest realm="r", nonce="1", algorithm=MD5-sess`), "", "", "no supported digest challenge (offered MD5-SESS)"},
		{"basic only", res(401, `WWW-Authenticate: Basic realm="r"`), "", "", "offered Basic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := parseChallenge(tt.res)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.chal.Algorithm != tt.wantAlg || ch.header != tt.wantHdr {
				t.Fatalf("got %s in %s", ch.chal.Algorithm, ch.header)
			}
			_, v1, _ := ch.answer("REGISTER", "sip:r", "u", "p")
			_, v2, _ := ch.answer("REGISTER", "sip:r", "u", "p")
			if len(ch.chal.QOP) > 0 && (!strings.Contains(v1, "nc=00000001") || !strings.Contains(v2, "nc=00000002")) {
				t.Errorf("nonce count does not grow: %s / %s", v1, v2)
			}
		})
	}
}

func TestRefreshIn(t *testing.T) {
	for _, tt := range []struct{ granted, want time.Duration }{
		{2 * time.Second, time.Second},
		{60 * time.Second, 30 * time.Second},
		{300 * time.Second, 270 * time.Second},
		{3600 * time.Second, 3570 * time.Second},
	} {
		if got := refreshIn(tt.granted); got != tt.want {
			t.Errorf("refreshIn(%s) = %s, want %s", tt.granted, got, tt.want)
		}
	}
	for range 100 {
		if d := jitter(10 * time.Second); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jitter(10s) = %s", d)
		}
	}
}

// requireTool finds a tool a test needs: under CI=true a missing one fails
// the test (the CI machine must have it), elsewhere it skips with a hint.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := name + " not found: install the Debian package " + pkg + " (scripts/install-test-deps.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
