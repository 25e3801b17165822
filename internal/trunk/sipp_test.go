package trunk

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sipp is a SIPp UAS the test runs in the foreground.
type sipp struct {
	uri    string
	done   chan struct{}
	err    error // the exit status, once done is closed
	out    *lockedBuffer
	dir    string
	cancel context.CancelFunc
}

// startSIPp runs SIPp as a UAS on 127.0.0.22 with one of the scenarios of
// testdata for one "call" (our client keeps one Call-ID, so every REGISTER
// of a test is the same SIPp call) and waits until it listens.
func startSIPp(t *testing.T, scenario string) *sipp {
	t.Helper()
	bin := requireTool(t, "sipp", "sip-tester")
	sf, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const ip = "127.0.0.22"
	port := freePort(t, ip)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, bin, "-sf", sf, "-i", ip, "-p", strconv.Itoa(port),
		"-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"))
	cmd.Dir = dir
	s := &sipp{uri: "sip:" + net.JoinHostPort(ip, strconv.Itoa(port)), done: make(chan struct{}), out: &lockedBuffer{}, dir: dir, cancel: cancel}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start sipp: %v", err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel() // kills sipp if the test left it running
		<-s.done
		if t.Failed() {
			s.dump(t)
		}
	})
	// SIPp listens once the port is taken.
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			break
		}
		pc.Close()
		select {
		case <-s.done:
			t.Fatalf("sipp exited at start-up: %v\n%s", s.err, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("sipp did not listen within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// wait waits for SIPp to finish its scenario and fails unless it passed.
func (s *sipp) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("sipp did not finish its scenario within 10s")
	}
	if s.err != nil {
		var ee *exec.ExitError
		if errors.As(s.err, &ee) {
			t.Fatalf("sipp failed the scenario (exit %d)", ee.ExitCode())
		}
		t.Fatalf("sipp: %v", s.err)
	}
}

func (s *sipp) dump(t *testing.T) {
	for _, f := range []string{"errors.log", "messages.log"} {
		if b, err := os.ReadFile(filepath.Join(s.dir, f)); err == nil {
			t.Logf("sipp %s:\n%s", f, b)
		}
	}
	out := s.out.String()
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	t.Logf("sipp output (tail):\n%s", out)
}

// TestSIPp runs the client against SIPp scenarios (testdata/sipp_uas_*.xml)
// for the registrar behaviours a hand-written server could get wrong in the
// same way as the client: a digest challenge SIPp verifies itself, a 423,
// and a lost request. Each ends with the client's unregister, which the
// scenario checks (Expires: 0) before SIPp exits with success.
func TestSIPp(t *testing.T) {
	tests := []struct {
		name     string
		scenario string
		ask      time.Duration
		timeout  time.Duration
		granted  time.Duration
		wantErr  string // of the first Register
		statuses []Status
	}{
		{"challenge", "sipp_uas_auth.xml", 300 * time.Second, time.Second, 60 * time.Second, "",
			[]Status{Registering, Registered, Unregistering, Unregistered}},
		{"interval too brief", "sipp_uas_423.xml", 30 * time.Second, time.Second, 120 * time.Second, "",
			[]Status{Registering, Registered, Unregistering, Unregistered}},
		{"dropped request", "sipp_uas_drop.xml", 300 * time.Second, 700 * time.Millisecond, 60 * time.Second, "no answer",
			[]Status{Registering, Failed, Registered, Unregistering, Unregistered}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSIPp(t, tt.scenario)
			c, log := newLoggedClient(t, func(o *Options) { o.Timeout = tt.timeout },
				Registration{Name: "mds-sipp", Registrar: s.uri, Username: "trunk", Password: "s1pp-secret", Expiry: tt.ask})
			err := c.Register(ctxFor(t, 5*time.Second))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Register: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Register error = %v, want %q", err, tt.wantErr)
			}
			waitFor(t, 5*time.Second, "registered", func() bool { return state(t, c, "mds-sipp").State == Registered })
			st := state(t, c, "mds-sipp")
			if st.Granted != tt.granted || st.LastResponse != "200 OK" {
				t.Errorf("state %+v, want granted %s", st, tt.granted)
			}
			if err := c.Unregister(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("Unregister: %v", err)
			}
			s.wait(t)
			if got := log.get("mds-sipp"); !slices.Equal(got, tt.statuses) {
				t.Errorf("statuses %v, want %v", got, tt.statuses)
			}
		})
	}

	// SIPp's verifyauth must tell a wrong answer from a right one, or the
	// "challenge" case above proves nothing about our digest.
	t.Run("challenge wrong password", func(t *testing.T) {
		s := startSIPp(t, "sipp_uas_auth.xml")
		c := newTestClient(t, nil, Registration{Name: "mds-sipp", Registrar: s.uri, Username: "trunk", Password: "not-it"})
		err := c.Register(ctxFor(t, 5*time.Second))
		if err == nil || !strings.Contains(err.Error(), "403 Wrong Credentials") {
			t.Fatalf("Register error = %v, want SIPp's 403", err)
		}
		if st := state(t, c, "mds-sipp"); st.State != Failed || st.LastResponse != "403 Wrong Credentials" {
			t.Errorf("state %+v", st)
		}
		s.wait(t) // the scenario ends after its 403
	})
}
