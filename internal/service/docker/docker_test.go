package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/service/docker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeImage()
		os.Exit(code)
	}))
}

// fake is an engine on a unix socket that answers what the test says and
// records the requests, for what a real daemon will not do on demand:
// plain-text errors, huge answers, other API versions, hanging.
type fake struct {
	socket string

	mu   sync.Mutex
	reqs []string // "POST /v1.41/containers/xuc/stop?t=10"
}

// newFake serves handler, with GET /version answering API 1.41 unless
// handler answers it.
func newFake(t *testing.T, handler http.HandlerFunc) *fake {
	t.Helper()
	// A short folder: a unix socket's path is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fake{socket: filepath.Join(dir, "docker.sock")}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		handler(w, r)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return f
}

func (f *fake) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// answer is a handler that answers every container call with status and
// body, and /version with API 1.41.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			fmt.Fprint(w, `{"ApiVersion":"1.41","MinAPIVersion":"1.12"}`)
			return
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

func TestBackend_Start(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{name: "started", status: http.StatusNoContent},
		{name: "already running", status: http.StatusNotModified},
		{
			name:    "engine error",
			status:  http.StatusBadRequest,
			body:    `{"message":"failed to create shim task: exec: \"/nope\": stat /nope: no such file or directory: unknown"}`,
			wantErr: `container xuc: failed to create shim task: exec: "/nope": stat /nope: no such file or directory: unknown`,
		},
		{
			name:    "plain text error",
			status:  http.StatusBadRequest,
			body:    "client version 1.11 is too old.\nsecond line\n",
			wantErr: "container xuc: client version 1.11 is too old.",
		},
		{
			name:    "no message",
			status:  http.StatusInternalServerError,
			wantErr: "container xuc: docker engine answered 500 Internal Server Error",
		},
		{
			name:    "not routed",
			status:  http.StatusNotFound,
			body:    `{"message":"page not found"}`,
			wantErr: "container xuc: page not found",
		},
		{
			name:    "redirected",
			status:  http.StatusMovedPermanently,
			wantErr: "container xuc: docker engine answered 301 Moved Permanently",
		},
		{
			name:    "no such container",
			status:  http.StatusNotFound,
			body:    `{"message":"No such container: xuc"}`,
			wantErr: `no such container "xuc": create it first (docker create --name xuc ...)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, answer(tt.status, tt.body))
			err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Start(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
			} else if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Start:\n got %v\nwant %s", err, tt.wantErr)
			}
			if want := []string{"GET /version", "POST /v1.41/containers/xuc/start"}; !equal(f.requests(), want) {
				t.Fatalf("requests %q, want %q", f.requests(), want)
			}
			if errors.Is(err, docker.ErrNoSuchContainer) != (tt.name == "no such container") {
				t.Fatalf("errors.Is(%v, ErrNoSuchContainer) is wrong", err)
			}
		})
	}
}

func TestBackend_Stop(t *testing.T) {
	t.Run("timeout in whole seconds", func(t *testing.T) {
		tests := []struct {
			timeout time.Duration
			want    string
		}{
			{0, "t=10"},
			{3 * time.Second, "t=3"},
			{1500 * time.Millisecond, "t=2"},
			{time.Millisecond, "t=1"},
		}
		for _, tt := range tests {
			f := newFake(t, answer(http.StatusNoContent, ""))
			b := docker.New(docker.Options{Container: "xuc", Socket: f.socket, StopTimeout: tt.timeout})
			if err := b.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if got, want := f.requests()[1], "POST /v1.41/containers/xuc/stop?"+tt.want; got != want {
				t.Errorf("StopTimeout %s: got %s, want %s", tt.timeout, got, want)
			}
		}
	})

	t.Run("already stopped", func(t *testing.T) {
		f := newFake(t, answer(http.StatusNotModified, ""))
		if err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Stop(context.Background()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	})

	t.Run("engine hangs, ctx ends", func(t *testing.T) {
		release := make(chan struct{})
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				fmt.Fprint(w, `{"ApiVersion":"1.41"}`)
				return
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Stop(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "container xuc: context deadline exceeded" {
			t.Fatalf("Stop: %v", err)
		}
		if d := time.Since(begin); d > time.Second {
			t.Fatalf("Stop returned after %s", d)
		}
	})
}

func TestBackend_Inspect(t *testing.T) {
	t.Run("healthcheck", func(t *testing.T) {
		f := newFake(t, answer(http.StatusOK, `{"Id":"95a3","State":{"Status":"running","Running":true,
			"ExitCode":0,"Error":"","StartedAt":"2026-12-01T19:32:28.587482765Z","FinishedAt":"0001-01-01T00:00:00Z",
			"Health":{"Status":"unhealthy","FailingStreak":2,"Log":[
				{"ExitCode":1,"Output":"old"},
				{"ExitCode":1,"Output":"connecting\nstatus 503: database down\n"}]}}}`))
		got, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Inspect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := docker.State{
			Running:      true,
			Status:       "running",
			Health:       "unhealthy",
			HealthOutput: "connecting; status 503: database down",
			StartedAt:    time.Date(2026, 12, 1, 19, 32, 28, 587482765, time.UTC),
		}
		if got != want {
			t.Fatalf("Inspect:\n got %+v\nwant %+v", got, want)
		}
		if want := []string{"GET /version", "GET /v1.41/containers/xuc/json"}; !equal(f.requests(), want) {
			t.Fatalf("requests %q, want %q", f.requests(), want)
		}
	})

	t.Run("no healthcheck, never started", func(t *testing.T) {
		f := newFake(t, answer(http.StatusOK, `{"State":{"Status":"created","Running":false,"ExitCode":127,
			"Error":"exec: \"/nope\": stat /nope: no such file or directory","StartedAt":"0001-01-01T00:00:00Z"}}`))
		got, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Inspect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := docker.State{Status: "created", ExitCode: 127, Error: `exec: "/nope": stat /nope: no such file or directory`}
		if got != want || !got.StartedAt.IsZero() {
			t.Fatalf("Inspect:\n got %+v\nwant %+v", got, want)
		}
	})

	t.Run("paused is not running", func(t *testing.T) {
		f := newFake(t, answer(http.StatusOK, `{"State":{"Status":"paused","Running":true,"Paused":true,"Health":{"Status":"none"}}}`))
		got, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Inspect(context.Background())
		if err != nil || got.Running || got.Health != "" {
			t.Fatalf("Inspect: %+v, %v", got, err)
		}
	})

	t.Run("answer too large", func(t *testing.T) {
		f := newFake(t, answer(http.StatusOK, `{"State":{"Status":"running","Error":"`+strings.Repeat("x", 2<<20)+`"}}`))
		_, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Inspect(context.Background())
		if want := "docker daemon at " + f.socket + ": answer larger than 1024 KiB"; err == nil || err.Error() != want {
			t.Fatalf("Inspect: %v, want %s", err, want)
		}
	})

	t.Run("not JSON", func(t *testing.T) {
		f := newFake(t, answer(http.StatusOK, `<html>`))
		_, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Inspect(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), "container xuc: bad inspect answer: ") {
			t.Fatalf("Inspect: %v", err)
		}
	})
}

func TestBackend_Running(t *testing.T) {
	f := newFake(t, answer(http.StatusNotFound, `{"message":"No such container: xuc"}`))
	running, err := docker.New(docker.Options{Container: "xuc", Socket: f.socket}).Running(context.Background())
	if running || !errors.Is(err, docker.ErrNoSuchContainer) {
		t.Fatalf("Running: %v, %v", running, err)
	}
}

func TestBackend_apiVersion(t *testing.T) {
	tests := []struct {
		name    string
		version string // the engine's /version answer
		want    string // path prefix used
	}{
		{"same as tested", `{"ApiVersion":"1.41","MinAPIVersion":"1.12"}`, "/v1.41/"},
		{"older engine", `{"ApiVersion":"1.40","MinAPIVersion":"1.12"}`, "/v1.40/"},
		{"newer engine", `{"ApiVersion":"1.50","MinAPIVersion":"1.24"}`, "/v1.41/"},
		{"engine that dropped 1.41", `{"ApiVersion":"1.52","MinAPIVersion":"1.44"}`, "/v1.44/"},
		{"no minimum", `{"ApiVersion":"1.41"}`, "/v1.41/"},
		{"unreadable", `{"ApiVersion":"2"}`, "/v1.41/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/version" {
					fmt.Fprint(w, tt.version)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			b := docker.New(docker.Options{Container: "xuc", Socket: f.socket})
			for range 2 {
				if err := b.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"GET /version", "POST " + tt.want + "containers/xuc/start", "POST " + tt.want + "containers/xuc/start"}
			if !equal(f.requests(), want) {
				t.Fatalf("requests %q, want %q (version asked once)", f.requests(), want)
			}
		})
	}

	t.Run("fixed", func(t *testing.T) {
		for _, v := range []string{"1.43", "v1.43"} {
			f := newFake(t, answer(http.StatusNoContent, ""))
			if err := docker.New(docker.Options{Container: "xuc", Socket: f.socket, APIVersion: v}).Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want := []string{"POST /v1.43/containers/xuc/start"}; !equal(f.requests(), want) {
				t.Fatalf("APIVersion %q: requests %q, want %q", v, f.requests(), want)
			}
		}
	})

	t.Run("fixed, unreadable", func(t *testing.T) {
		f := newFake(t, answer(http.StatusNoContent, ""))
		err := docker.New(docker.Options{Container: "xuc", Socket: f.socket, APIVersion: "latest"}).Start(context.Background())
		if want := `docker API version "latest": want major.minor, such as 1.41`; err == nil || err.Error() != want {
			t.Fatalf("Start: %v, want %s", err, want)
		}
		if len(f.requests()) != 0 {
			t.Fatalf("requests %q, want none", f.requests())
		}
	})

	t.Run("failure is not remembered", func(t *testing.T) {
		var mu sync.Mutex
		failed := false
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if r.URL.Path == "/version" && !failed {
				failed = true
				http.Error(w, `{"message":"starting up"}`, http.StatusServiceUnavailable)
				return
			}
			answer(http.StatusNoContent, "")(w, r)
		})
		b := docker.New(docker.Options{Container: "xuc", Socket: f.socket})
		err := b.Start(context.Background())
		if want := "docker daemon at " + f.socket + ": GET /version: starting up"; err == nil || err.Error() != want {
			t.Fatalf("first Start: %v, want %s", err, want)
		}
		if err := b.Start(context.Background()); err != nil {
			t.Fatalf("second Start: %v", err)
		}
	})
}

func TestBackend_unreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	missing := filepath.Join(dir, "missing.sock")

	// A socket file nobody listens on any more.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	tests := []struct {
		name   string
		socket string
		want   string
	}{
		{"missing", missing, "docker daemon not reachable at " + missing + ": connect: no such file or directory"},
		{"unix URL", "unix://" + missing, "docker daemon not reachable at " + missing + ": connect: no such file or directory"},
		{"refused", stale, "docker daemon not reachable at " + stale + ": connect: connection refused"},
		{"tcp", "tcp://127.0.0.1:2375", `docker socket "tcp://127.0.0.1:2375": want a unix socket path or unix:// URL`},
		{"empty unix URL", "unix://", `docker socket "unix://": want a unix socket path or unix:// URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := docker.New(docker.Options{Container: "xuc", Socket: tt.socket})
			for name, call := range map[string]func(context.Context) error{
				"Start": b.Start,
				"Stop":  b.Stop,
				"Check": docker.Ready{Backend: b}.Check,
			} {
				if err := call(context.Background()); err == nil || err.Error() != tt.want {
					t.Errorf("%s:\n got %v\nwant %s", name, err, tt.want)
				}
			}
		})
	}

	t.Run("no container name", func(t *testing.T) {
		err := docker.New(docker.Options{Socket: missing}).Start(context.Background())
		if err == nil || err.Error() != "no container name" {
			t.Fatalf("Start: %v", err)
		}
	})

	t.Run("default socket", func(t *testing.T) {
		if got := docker.DefaultSocket; got != "/var/run/docker.sock" {
			t.Fatalf("DefaultSocket = %s", got)
		}
	})
}

func TestReady_Check(t *testing.T) {
	tests := []struct {
		name  string
		state string // the State object of the inspect answer
		want  string // "" for ready
	}{
		{"running, no healthcheck", `{"Status":"running","Running":true}`, ""},
		{"running, healthcheck disabled", `{"Status":"running","Running":true,"Health":{"Status":"none"}}`, ""},
		{"healthy", `{"Status":"running","Running":true,"Health":{"Status":"healthy","Log":[{"Output":""}]}}`, ""},
		{
			"unhealthy",
			`{"Status":"running","Running":true,"Health":{"Status":"unhealthy","Log":[{"ExitCode":1,"Output":"status 503: database down\n"}]}}`,
			"container xuc is unhealthy: status 503: database down",
		},
		{
			"unhealthy, silent",
			`{"Status":"running","Running":true,"Health":{"Status":"unhealthy","Log":[{"ExitCode":1,"Output":""}]}}`,
			"container xuc is unhealthy (its health check printed nothing)",
		},
		{
			"starting",
			`{"Status":"running","Running":true,"Health":{"Status":"starting","Log":[]}}`,
			"container xuc is not healthy yet (no health check has passed)",
		},
		{
			"starting, failed once",
			`{"Status":"running","Running":true,"Health":{"Status":"starting","Log":[{"ExitCode":1,"Output":"connection refused"}]}}`,
			"container xuc is not healthy yet: connection refused",
		},
		{"exited", `{"Status":"exited","ExitCode":2,"Health":{"Status":"unhealthy"}}`, "container xuc exited (code 2)"},
		{
			"start refused",
			`{"Status":"created","ExitCode":127,"Error":"exec: \"/nope\": no such file"}`,
			`container xuc is not running (created): exec: "/nope": no such file`,
		},
		{"created", `{"Status":"created"}`, "container xuc is not running (created)"},
		{"restarting", `{"Status":"restarting","Running":true,"ExitCode":1}`, "container xuc is restarting (last exit code 1)"},
		{"paused", `{"Status":"paused","Running":true}`, "container xuc is paused"},
		{"removing", `{"Status":"removing"}`, "container xuc is being removed"},
		{"dead", `{"Status":"dead","Error":"device busy"}`, "container xuc is dead: device busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, answer(http.StatusOK, `{"State":`+tt.state+`}`))
			err := docker.Ready{Backend: docker.New(docker.Options{Container: "xuc", Socket: f.socket})}.Check(context.Background())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Check:\n got %v\nwant %s", err, tt.want)
			}
		})
	}

	t.Run("long output", func(t *testing.T) {
		// 512 bytes end in the middle of an é, which is not split.
		out := "a" + strings.Repeat("é", 400) + `\nlast line\n`
		f := newFake(t, answer(http.StatusOK, `{"State":{"Status":"running","Health":{"Status":"unhealthy","Log":[{"Output":"`+out+`"}]}}}`))
		err := docker.Ready{Backend: docker.New(docker.Options{Container: "xuc", Socket: f.socket})}.Check(context.Background())
		prefix := "container xuc is unhealthy: a" + strings.Repeat("é", 255) + "..."
		if err == nil || err.Error() != prefix {
			t.Fatalf("Check: %v, want %d bytes starting with %.40s", err, len(prefix), prefix)
		}
	})

	t.Run("no backend", func(t *testing.T) {
		if err := (docker.Ready{}).Check(context.Background()); err == nil || err.Error() != "no docker backend" {
			t.Fatalf("Check: %v", err)
		}
	})
}
