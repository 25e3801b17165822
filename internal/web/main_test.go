package web_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binDir holds the resilience binary, built once for the tests that run
// agents as processes (the lab).
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

// binary builds the resilience executable the first time a test needs it.
// It is built without the race detector, unlike the lab's own tests: the
// lab hashes its admin password at bcrypt cost 12, which takes seconds per
// login under the detector. The in-process agents of the pair tests run
// this package's code under the race detector instead.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("RESILIENCE_TEST_BINARY"); b != "" {
		return b // a binary built elsewhere (a release build, say)
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "resilience-web-bin")
		if err != nil {
			binError = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "resilience")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "../../cmd/resilience").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("build resilience: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}
