package mds

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestSIPp registers with SIPp, a SIP stack that is not ours, as the UAC:
// testdata/sipp_register.xml answers the digest challenge with SIPp's
// [authentication] keyword, then unregisters. SIPp 3.6 reads only the
// first WWW-Authenticate and knows only MD5, so the registrar offers MD5
// alone here, as an operator would for such clients. Debian's sip-tester package
// provides sipp; under CI=true its absence is a failure, not a skip.
func TestSIPp(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sipp not found: apt-get install -y sip-tester")
		}
		t.Skip("sipp not found (apt-get install -y sip-tester)")
	}
	scenario, err := filepath.Abs("testdata/sipp_register.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, transport, addr string }{
		{"UDP", "u1", "udp"},
		{"TCP", "t1", "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := startRegistrar(t, func(o *Options) { o.DigestAlgorithms = []string{"MD5"} })
			target := r.UDPAddr()
			if tc.addr == "tcp" {
				target = r.TCPAddr()
			}
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sipp", target,
				"-sf", scenario, "-m", "1", "-t", tc.transport,
				"-i", "127.0.0.54", "-p", strconv.Itoa(freePort(t, tc.addr, "127.0.0.54")),
				"-timeout", "10s", "-timeout_error", "-nostdin",
				"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
				"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"))
			cmd.Dir = dir
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			// Watch the registrar while SIPp runs: its contact must be
			// bound, with its node, before it unregisters.
			var seen *Binding
			for waiting := true; waiting; {
				select {
				case err = <-done:
					waiting = false
				case <-time.After(5 * time.Millisecond):
					for _, b := range r.Bindings() {
						if b.Node == "sipp-node" {
							seen = &b
						}
					}
				}
			}
			if err != nil {
				msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
				errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
				t.Fatalf("sipp: %v\nerrors:\n%s\nmessages:\n%s", err, errs, msgs)
			}
			if seen == nil || seen.UserAgent != "SIPp" || seen.Transport != map[string]string{"udp": "UDP", "tcp": "TCP"}[tc.addr] {
				t.Fatalf("SIPp's binding seen while it ran: %+v", seen)
			}
			if bs := r.Bindings(); len(bs) != 0 {
				t.Fatalf("still bound after SIPp unregistered: %+v", bs)
			}
		})
	}
}

// freePort asks the kernel for a free port on host.
func freePort(t *testing.T, network, host string) int {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		addr = c.LocalAddr()
	} else {
		l, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addr = l.Addr()
	}
	_, port, _ := net.SplitHostPort(addr.String())
	p, _ := strconv.Atoi(port)
	return p
}
