package command_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/service/command"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestBackend_Start(t *testing.T) {
	t.Run("runs the start command", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "started")
		b := command.New(command.Options{Start: "touch " + marker, Stop: "true"})
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if !exists(marker) {
			t.Fatal("start command did not run")
		}
	})

	t.Run("fails", func(t *testing.T) {
		script := "echo one; echo two >&2; echo three; exit 4"
		b := command.New(command.Options{Start: script})
		err := b.Start(context.Background())
		want := `run "` + script + `": exit status 4: two; three`
		if err == nil || err.Error() != want {
			t.Fatalf("Start:\n got %v\nwant %s", err, want)
		}
	})

	t.Run("fails silently", func(t *testing.T) {
		err := command.New(command.Options{Start: "exit 1"}).Start(context.Background())
		if want := `run "exit 1": exit status 1`; err == nil || err.Error() != want {
			t.Fatalf("Start: %v, want %s", err, want)
		}
	})

	t.Run("output is bounded", func(t *testing.T) {
		// 200 KiB of output, then the line that matters.
		script := `i=0; while [ $i -lt 2000 ]; do printf '%0100d\n' $i; i=$((i+1)); done; echo cannot bind; exit 1`
		err := command.New(command.Options{Start: script}).Start(context.Background())
		if err == nil || !strings.HasSuffix(err.Error(), "1999; cannot bind") || !strings.Contains(err.Error(), ": exit status 1: 0") {
			t.Fatalf("Start: %v", err)
		}
		if len(err.Error()) > 1024 {
			t.Fatalf("error is %d bytes long", len(err.Error()))
		}
	})

	t.Run("already running", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "started")
		b := command.New(command.Options{Start: "touch " + marker, Status: "true"})
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if exists(marker) {
			t.Fatal("start command ran though status said running")
		}
	})

	t.Run("not running yet", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "started")
		b := command.New(command.Options{Start: "touch " + marker, Status: "test -e " + marker})
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if !exists(marker) {
			t.Fatal("start command did not run")
		}
		running, err := b.Running(context.Background())
		if err != nil || !running {
			t.Fatalf("Running: %v, %v", running, err)
		}
	})

	t.Run("env and dir", func(t *testing.T) {
		dir := t.TempDir()
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		b := command.New(command.Options{
			Start: `test "$UNIT=$(pwd -P)" = "asterisk=` + real + `" || { echo "got $UNIT in $(pwd -P)"; exit 1; }`,
			Env:   map[string]string{"UNIT": "asterisk"},
			Dir:   dir,
		})
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("log file", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "log", "unit.log")
		b := command.New(command.Options{
			Start: "echo starting; echo warn >&2", Stop: "echo stopping",
			Status: "echo checking; exit 1", LogFile: log,
		})
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		if want := "starting\nwarn\nstopping\n"; string(data) != want {
			t.Fatalf("log %q, want %q (status output not logged)", data, want)
		}
	})

	t.Run("killed with its group when ctx ends", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "helper.pid")
		b := command.New(command.Options{Start: `sleep 60 & echo $! > ` + pidFile + `; echo waiting; wait`})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := b.Start(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "killed") || !strings.HasSuffix(err.Error(), ": waiting") {
			t.Fatalf("Start: %v, want killed, deadline exceeded, and the output", err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("Start took %s", d)
		}
		data, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		helper, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		deadline := time.Now().Add(5 * time.Second)
		for alive(helper) {
			if time.Now().After(deadline) {
				t.Fatalf("helper %d survived", helper)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("leaves a daemon holding its output", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "daemon.pid")
		b := command.New(command.Options{Start: `sleep 60 & echo $! > ` + pidFile})
		t.Cleanup(func() {
			data, _ := os.ReadFile(pidFile)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				_ = os.Remove(pidFile)
				p, _ := os.FindProcess(pid)
				_ = p.Kill()
			}
		})
		begin := time.Now()
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("Start took %s: waited for the daemon", d)
		}
	})

	t.Run("no start command", func(t *testing.T) {
		if err := command.New(command.Options{}).Start(context.Background()); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestBackend_Stop(t *testing.T) {
	t.Run("runs the stop command", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "stopped")
		b := command.New(command.Options{Start: "true", Stop: "touch " + marker})
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !exists(marker) {
			t.Fatal("stop command did not run")
		}
	})

	t.Run("fails", func(t *testing.T) {
		b := command.New(command.Options{Stop: "echo Failed to stop asterisk.service: Unit not loaded. >&2; exit 5"})
		err := b.Stop(context.Background())
		if err == nil || !strings.HasSuffix(err.Error(), ": exit status 5: Failed to stop asterisk.service: Unit not loaded.") ||
			!strings.HasPrefix(err.Error(), `run "echo Failed`) {
			t.Fatalf("Stop: %v", err)
		}
	})

	t.Run("no stop command", func(t *testing.T) {
		if err := command.New(command.Options{Start: "true"}).Stop(context.Background()); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestBackend_Running(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  string
		want    bool
		wantErr bool
	}{
		{"running", "exit 0", true, false},
		{"stopped", "echo inactive; exit 3", false, false},
		{"no status command", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := command.New(command.Options{Status: tc.status}).Running(context.Background())
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("Running: %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}

	t.Run("cut short", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		got, err := command.New(command.Options{Status: "sleep 60"}).Running(ctx)
		if got || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Running: %v, %v; want an error, not a verdict", got, err)
		}
	})
}
