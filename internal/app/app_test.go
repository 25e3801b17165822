package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/apiclient"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/config"
	"github.com/xivo-resilience/resilience/internal/node"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "operate-token-for-app-tests"

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// agent writes a config from yaml (with %[1]s the state dir) and starts it.
func agent(t *testing.T, dir, yaml string) *App {
	t.Helper()
	file := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, Heartbeat: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return a
}

func header(name, role, addr string) string {
	return fmt.Sprintf(`kind: xivo
name: %s
role: %s
state_dir: state
listen:
  address: %s
auth:
  tokens:
    - {name: ops, scope: operate, hash: %q}
`, name, role, addr, auth.HashToken(token))
}

func settled(t *testing.T, c *apiclient.Client) node.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.Status(context.Background())
		if err == nil && s.Transition == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %+v %v", s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestApp_FailingServices(t *testing.T) {
	dir := t.TempDir()
	closed := freeAddr(t, "127.0.0.1")
	addr := freeAddr(t, "127.0.0.1")
	a := agent(t, dir, header("xivo-main", "standby", addr)+fmt.Sprintf(`services:
  - name: consul
    exec: {command: [sleep, "600"]}
  - name: asterisk
    exec: {command: [sleep, "600"]}
    ready: {tcp: %q, interval: 20ms}
    start_timeout: 300ms
  - name: xivo-ctid
    exec: {command: [sh, -c, "echo bad config >&2; exit 3"]}
`, closed))
	c, _ := apiclient.New("http://"+a.Addr(), token, apiclient.Options{})
	defer c.CloseIdle()
	settled(t, c)

	t.Run("a service that never gets ready", func(t *testing.T) {
		_, err := c.Start(context.Background(), false, "")
		var apiErr *apiclient.Error
		if !errors.As(err, &apiErr) || apiErr.Code != "transition_failed" || apiErr.Status == nil {
			t.Fatalf("err = %v, want transition_failed", err)
		}
		s := *apiErr.Status
		if s.Status != node.Failed || !strings.HasPrefix(s.Error, "asterisk: not ready after 300ms") || !strings.Contains(s.Error, "connection refused") {
			t.Fatalf("status %s error %q", s.Status, s.Error)
		}
		want := []node.ServiceState{node.ServiceRunning, node.ServiceFailed, node.ServiceStopped}
		for i, svc := range s.Services {
			if svc.State != want[i] {
				t.Errorf("%s: %s, want %s", svc.Name, svc.State, want[i])
			}
		}
	})
	t.Run("a service that exits at once; then Stop retried", func(t *testing.T) {
		ln, err := net.Listen("tcp", closed) // asterisk gets ready now
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, err = c.Start(context.Background(), false, "retry")
		var apiErr *apiclient.Error
		if !errors.As(err, &apiErr) || apiErr.Status == nil {
			t.Fatalf("err = %v", err)
		}
		if e := apiErr.Status.Error; !strings.HasPrefix(e, "xivo-ctid: exited at once: exit status 3") || !strings.Contains(e, "bad config") {
			t.Fatalf("error %q should name xivo-ctid, its exit status and its last log line", e)
		}
		s, err := c.Stop(context.Background(), "give up")
		if err != nil || s.Status != node.Inactive {
			t.Fatalf("stop: %s %v", s.Status, err)
		}
	})
}

func TestApp_TLSPeer(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile := writeCerts(t, dir)
	tokenFile := filepath.Join(dir, "peer.token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	mainAddr, standbyAddr := freeAddr(t, "127.0.0.2"), freeAddr(t, "127.0.0.3")
	tlsBlock := fmt.Sprintf("  tls: {cert_file: %q, key_file: %q}\n", certFile, keyFile)
	peer := func(name, addr string) string {
		return fmt.Sprintf("peer:\n  name: %s\n  url: https://%s\n  token: {file: %q}\n  ca_file: %q\n", name, addr, tokenFile, ca)
	}
	svc := "services:\n  - name: asterisk\n    exec: {command: [sleep, \"600\"]}\n"
	mainDir, standbyDir := filepath.Join(dir, "main"), filepath.Join(dir, "standby")
	os.Mkdir(mainDir, 0o700)
	os.Mkdir(standbyDir, 0o700)
	withTLS := func(h string) string { return strings.Replace(h, "auth:", tlsBlock+"auth:", 1) }
	s := agent(t, standbyDir, withTLS(header("xivo-standby", "standby", standbyAddr))+peer("xivo-main", mainAddr)+svc)
	m := agent(t, mainDir, withTLS(header("xivo-main", "main", mainAddr))+peer("xivo-standby", standbyAddr)+svc)

	mc, err := apiclient.New("https://"+m.Addr(), token, apiclient.Options{CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.CloseIdle()
	ms := settled(t, mc)
	if ms.Status != node.Active || len(ms.Warnings) != 0 {
		t.Fatalf("main over TLS: %s %+v", ms.Status, ms.Warnings)
	}
	sc, _ := apiclient.New("https://"+s.Addr(), token, apiclient.Options{CAFile: ca})
	defer sc.CloseIdle()
	_, err = sc.Start(context.Background(), false, "")
	if !errors.Is(asNodeErr(err), node.ErrPeerActive) {
		t.Fatalf("standby start over TLS: %v, want peer_active (the peer check went through TLS)", err)
	}
	plain, _ := apiclient.New("https://"+m.Addr(), token, apiclient.Options{})
	defer plain.CloseIdle()
	if _, err := plain.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("client without the CA: %v, want a certificate error", err)
	}
}

// asNodeErr maps an API error code back to the node's sentinel.
func asNodeErr(err error) error {
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) && apiErr.Code == "peer_active" {
		return node.ErrPeerActive
	}
	return err
}

// writeCerts makes a CA and a certificate for 127.0.0.2 and 127.0.0.3.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "xivo"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return caFile, certFile, keyFile
}
