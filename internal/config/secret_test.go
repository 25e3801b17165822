package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecret_Read(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "s3cret\n")
	crlf := write("crlf", "s3cret\r\n")
	inner := write("inner", "  two words \n\n")
	empty := write("empty", "\n")
	big := write("big", strings.Repeat("x", MaxSecretSize+1))
	limit := write("limit", strings.Repeat("x", MaxSecretSize))
	missing := filepath.Join(dir, "missing")
	t.Setenv("RESILIENCE_TEST_SECRET", "from-env")
	t.Setenv("RESILIENCE_TEST_EMPTY", "")

	tests := []struct {
		name    string
		secret  Secret
		want    string
		wantErr string
	}{
		{name: "env", secret: Secret{Env: "RESILIENCE_TEST_SECRET"}, want: "from-env"},
		{name: "env unset", secret: Secret{Env: "RESILIENCE_TEST_UNSET"}, wantErr: "read secret: environment variable RESILIENCE_TEST_UNSET is not set"},
		{name: "env empty", secret: Secret{Env: "RESILIENCE_TEST_EMPTY"}, wantErr: "read secret: environment variable RESILIENCE_TEST_EMPTY is empty"},
		{name: "file", secret: Secret{File: token}, want: "s3cret"},
		{name: "file crlf", secret: Secret{File: crlf}, want: "s3cret"},
		{name: "file keeps inner spaces", secret: Secret{File: inner}, want: "  two words "},
		{name: "file at the limit", secret: Secret{File: limit}, want: strings.Repeat("x", MaxSecretSize)},
		{name: "file empty", secret: Secret{File: empty}, wantErr: "read secret " + empty + ": file is empty"},
		{name: "file too large", secret: Secret{File: big}, wantErr: "read secret " + big + ": larger than 64 KiB"},
		{name: "file missing", secret: Secret{File: missing}, wantErr: "read secret: open " + missing + ": no such file or directory"},
		{name: "neither", secret: Secret{}, wantErr: "read secret: neither env nor file is set"},
		{name: "both", secret: Secret{Env: "RESILIENCE_TEST_SECRET", File: token}, wantErr: "read secret: both env and file are set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.secret.Read()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("Read() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read(): %v", err)
			}
			if got != tt.want {
				t.Errorf("Read() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSecret_IsZero(t *testing.T) {
	for _, tt := range []struct {
		s    Secret
		zero bool
	}{
		{Secret{}, true},
		{Secret{Env: "A"}, false},
		{Secret{File: "f"}, false},
	} {
		if got := tt.s.IsZero(); got != tt.zero {
			t.Errorf("%+v.IsZero() = %v, want %v", tt.s, got, tt.zero)
		}
	}
}

func TestLoad_secretFile(t *testing.T) {
	// A relative secret file resolves against the config's folder, not the
	// working directory.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "peer-token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := strings.Replace(base, "token: {env: PEER_TOKEN}", "token: {file: peer-token}", 1) + oneService
	name := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Peer.Token.Read()
	if err != nil || got != "tok" {
		t.Errorf("Peer.Token.Read() = %q, %v; want tok", got, err)
	}
}
