package trunk

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kamailioCfg is a minimal registrar: digest auth with one fixed password
// for every user (pv_auth_check with a plaintext password, no database),
// in-memory usrloc, and the ctl socket so the test can read the bindings
// with kamcmd. min_expires_mode makes Kamailio answer 423 below
// min_expires instead of silently raising the expiry.
const kamailioCfg = `#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
listen=udp:{{IP}}:{{PORT}}
listen=tcp:{{IP}}:{{PORT}}
mpath="{{MPATH}}"

loadmodule "kex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("ctl", "binrpc", "unix:{{DIR}}/ctl.sock")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "default_expires", 300)
modparam("registrar", "min_expires", 60)
modparam("registrar", "min_expires_mode", 1)
modparam("registrar", "max_expires", 120)
modparam("auth", "algorithm", "{{ALGORITHM}}")
modparam("auth", "secret", "resilience-test-nonce-secret")

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (!sanity_check("1511", "7")) {
		exit;
	}
	if (!is_method("REGISTER")) {
		sl_send_reply("405", "Method Not Allowed");
		exit;
	}
	if (!pv_auth_check("$fd", "{{PASSWORD}}", "0", "1")) {
		xlog("L_INFO", "challenge $rm from $si:$sp ($fu), auth code $rc\n");
		auth_challenge("$fd", "1");
		exit;
	}
	consume_credentials();
	# save() sends its own reply, errors (423) included; an sl_reply_error()
	# here, as in the sample config, would add a second, 500 answer.
	save("location");
	exit;
}
`

// kamailio is a Kamailio the test started.
type kamailio struct {
	uri    string // registrar URI for the chosen transport
	sock   string // ctl socket
	kamcmd string
	out    *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startKamailio writes a config into a temp dir and runs kamailio in the
// foreground (-DD -E) as a child process, killed at the end of the test.
func startKamailio(t *testing.T, ip, transport, algorithm, password string) *kamailio {
	t.Helper()
	bin := requireTool(t, "kamailio", "kamailio")
	kamcmd := requireTool(t, "kamcmd", "kamailio")
	mpath := kamailioModules(t)

	// Short path: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "kam")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := freePort(t, ip)
	cfg := strings.NewReplacer("{{IP}}", ip, "{{PORT}}", strconv.Itoa(port), "{{MPATH}}", mpath,
		"{{DIR}}", dir, "{{ALGORITHM}}", algorithm, "{{PASSWORD}}", password).Replace(kamailioCfg)
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	k := &kamailio{uri: fmt.Sprintf("sip:%s:%d", ip, port), sock: "unix:" + filepath.Join(dir, "ctl.sock"), kamcmd: kamcmd, out: &lockedBuffer{}}
	if transport == "tcp" {
		k.uri += ";transport=tcp"
	}
	// -m/-M keep shared and private memory small; -Y keeps runtime files
	// in the temp dir.
	cmd := exec.Command(bin, "-DD", "-E", "-f", cfgPath, "-Y", dir, "-m", "32", "-M", "8")
	cmd.Stdout, cmd.Stderr = k.out, k.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kamailio: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// The main process stops its children on SIGTERM; the group kill
		// is for the case it does not.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("kamailio output:\n%s", k.out.String())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := k.rpc("core.version"); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("kamailio exited at start-up:\n%s", k.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio did not answer on %s within 10s:\n%s", k.sock, k.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return k
}

func (k *kamailio) rpc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, k.kamcmd, append([]string{"-s", k.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kamcmd %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// kamBinding is one contact of `kamcmd ul.dump`.
type kamBinding struct {
	aor, address, userAgent string
	expires                 int
}

var (
	kamAoR     = regexp.MustCompile(`^AoR:\s*(\S+)`)
	kamAddress = regexp.MustCompile(`^Address:\s*(\S+)`)
	kamExpires = regexp.MustCompile(`^Expires:\s*(\d+)`)
	kamUA      = regexp.MustCompile(`^User-Agent:\s*(.*)$`)
)

// bindings parses ul.dump: AoR lines open a record, Address lines open a
// contact whose Expires (seconds left) and User-Agent follow.
func (k *kamailio) bindings(t *testing.T) ([]kamBinding, string) {
	t.Helper()
	out, err := k.rpc("ul.dump")
	if err != nil {
		t.Fatal(err)
	}
	var list []kamBinding
	var aor string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case kamAoR.MatchString(line):
			aor = kamAoR.FindStringSubmatch(line)[1]
		case kamAddress.MatchString(line):
			list = append(list, kamBinding{aor: aor, address: kamAddress.FindStringSubmatch(line)[1]})
		case len(list) > 0 && kamExpires.MatchString(line):
			list[len(list)-1].expires, _ = strconv.Atoi(kamExpires.FindStringSubmatch(line)[1])
		case len(list) > 0 && kamUA.MatchString(line):
			list[len(list)-1].userAgent = kamUA.FindStringSubmatch(line)[1]
		}
	}
	return list, out
}

func findBinding(list []kamBinding, address string) (kamBinding, bool) {
	for _, b := range list {
		if b.address == address {
			return b, true
		}
	}
	return kamBinding{}, false
}

// kamailioModules finds Debian's module directory (multiarch path).
func kamailioModules(t *testing.T) string {
	t.Helper()
	candidates, _ := filepath.Glob("/usr/lib/*/kamailio/modules")
	candidates = append(candidates, "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules")
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "registrar.so")); err == nil {
			return dir + "/"
		}
	}
	msg := "kamailio modules (registrar.so) not found: install the Debian package kamailio"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a port free on ip for both UDP and TCP at the time of
// the call.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestKamailio registers to a real Kamailio from Debian's packages and
// reads the binding it holds with kamcmd ul.dump: the 423 of min_expires,
// the shorter grant of max_expires, MD5 and SHA-256 digest, UDP and TCP,
// and an unregister that removes our contact but not the peer node's.
func TestKamailio(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		algorithm string
		ask       time.Duration
		granted   time.Duration
	}{
		// Below min_expires (60): 423, then 60.
		{"udp md5 423", "udp", "MD5", 30 * time.Second, 60 * time.Second},
		// Above max_expires (120): granted 120.
		{"tcp sha-256 max_expires", "tcp", "SHA-256", 600 * time.Second, 120 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := startKamailio(t, "127.0.0.21", tt.transport, tt.algorithm, "trunk-secret")
			reg := Registration{Name: "mds-1", Registrar: k.uri, Username: "xivo-trunk", Password: "trunk-secret", Expiry: tt.ask}
			main := newTestClient(t, nil, reg)
			standby := newTestClient(t, func(o *Options) { o.Node = "xivo-standby"; o.LocalIP = "127.0.0.3" }, reg)

			if err := main.Register(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("Register: %v", err)
			}
			st := state(t, main, "mds-1")
			if st.State != Registered || st.Granted != tt.granted || st.LastResponse != "200 OK" {
				t.Fatalf("state %+v, want registered for %s", st, tt.granted)
			}
			list, dump := k.bindings(t)
			b, ok := findBinding(list, st.Contact)
			if !ok {
				t.Fatalf("kamailio holds no binding for %s:\n%s", st.Contact, dump)
			}
			if b.aor != "xivo-trunk" || b.userAgent != "resilience/xivo-main" ||
				b.expires < int(tt.granted/time.Second)-3 || b.expires > int(tt.granted/time.Second) {
				t.Errorf("binding %+v, want AoR xivo-trunk, our User-Agent, ~%s left", b, tt.granted)
			}

			// The standby takes over: both bound for a moment, then the
			// main leaves; the standby's binding must survive that.
			if err := standby.Register(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("standby Register: %v", err)
			}
			peer := state(t, standby, "mds-1").Contact
			if list, dump := k.bindings(t); len(list) != 2 {
				t.Fatalf("want both nodes bound:\n%s", dump)
			}
			if err := main.Unregister(ctxFor(t, 5*time.Second)); err != nil {
				t.Fatalf("Unregister: %v", err)
			}
			if st := state(t, main, "mds-1"); st.State != Unregistered || st.LastResponse != "200 OK" {
				t.Errorf("after Unregister: %+v", st)
			}
			list, dump = k.bindings(t)
			if _, ok := findBinding(list, st.Contact); ok {
				t.Errorf("our binding is still there after Unregister:\n%s", dump)
			}
			if b, ok := findBinding(list, peer); !ok || b.userAgent != "resilience/xivo-standby" {
				t.Errorf("the standby's binding went with ours:\n%s", dump)
			}
		})
	}
}
