package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xivo-resilience/resilience/internal/auth"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = e.run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestRun_CheckConfig(t *testing.T) {
	examples, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(examples) < 4 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	for _, f := range examples {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errOut := run(t, "", "check-config", "--config", f)
			if code != 0 || !strings.Contains(out, ": ok (") {
				t.Fatalf("exit %d, %q %q", code, out, errOut)
			}
		})
	}
	t.Run("bad file: every error on its own line, exit 1", func(t *testing.T) {
		code, _, errOut := run(t, "", "check-config", "--config", "../config/testdata/bad/duplicate-service.yaml")
		if code != 1 || !strings.HasPrefix(errOut, "Error: ../config/testdata/bad/duplicate-service.yaml:") || !strings.Contains(errOut, "duplicate service name") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := run(t, "", "check-config", "--config", "/nonexistent.yaml")
		if code != 1 || !strings.Contains(errOut, "no such file") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestRun_Usage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"stray argument", []string{"status", "extra"}, 2, `unexpected argument "extra"`},
		{"no node", []string{"status"}, 1, "no node given: use --node URL or set RESILIENCE_NODE"},
		{"bad node URL", []string{"status", "--node", "ftp://x"}, 1, "want http://host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, "", tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.err) {
				t.Fatalf("exit %d, stderr %q, want %d with %q", code, errOut, tt.code, tt.err)
			}
		})
	}
}

func TestRun_HashToken(t *testing.T) {
	code, out, _ := run(t, "", "hash-token", "--new")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || auth.HashToken(lines[0]) != lines[1] {
		t.Fatalf("exit %d, %q", code, out)
	}
	code, out, _ = run(t, "a-token-of-twenty-chars\n", "hash-token")
	if code != 0 || strings.TrimSpace(out) != auth.HashToken("a-token-of-twenty-chars") {
		t.Fatalf("exit %d, %q", code, out)
	}
	if code, _, errOut := run(t, "short\n", "hash-token"); code != 1 || !strings.Contains(errOut, "too short") {
		t.Fatalf("short token: exit %d %q", code, errOut)
	}
}
