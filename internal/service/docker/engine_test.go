package docker_test

// The TestEngine tests run against the real daemon, with containers of an
// image built FROM scratch around testdata/svc. Without a daemon they skip,
// except under CI=true, where they fail: a skipped integration test there
// would hide that the backend is untested.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xivo-resilience/resilience/internal/service"
	"github.com/xivo-resilience/resilience/internal/service/docker"
)

// dockerfile makes the test image. The healthcheck polls fast, and one
// failure makes the container unhealthy, so that tests wait little.
const dockerfile = `FROM scratch
COPY svc /svc
ENTRYPOINT ["/svc"]
HEALTHCHECK --interval=200ms --timeout=2s --retries=1 CMD ["/svc", "-health"]
`

var (
	imageOnce sync.Once
	imageName string // set once built, for removeImage
	imageErr  error
	names     atomic.Int64
)

// engineSocket is the daemon the docker CLI talks to, so that the Backend
// under test and the CLI preparing its containers agree: DOCKER_HOST when
// it names a unix socket, else the Backend's default.
func engineSocket() string {
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		return h
	}
	return ""
}

// needDocker skips the test when no daemon answers, or fails it under
// CI=true.
func needDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := osexec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.APIVersion}}").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("docker daemon not reachable (docker version: %v: %s); start it with scripts/start-dockerd.sh",
		err, strings.TrimSpace(string(out)))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
}

// dockerCLI runs the docker CLI and returns its trimmed output.
func dockerCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(osexec.Command("docker", args...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func run(cmd *osexec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// image builds the test image the first time it is called; TestMain
// removes it.
func image(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "resilience-docker-image")
		if err != nil {
			imageErr = err
			return
		}
		defer os.RemoveAll(dir)
		build := osexec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "svc"), "./testdata/svc")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if _, imageErr = run(build); imageErr != nil {
			return
		}
		if imageErr = os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); imageErr != nil {
			return
		}
		name := fmt.Sprintf("resilience-docker-test:%d", os.Getpid())
		if _, imageErr = run(osexec.Command("docker", "build", "-q", "-t", name, dir)); imageErr == nil {
			imageName = name
		}
	})
	if imageErr != nil {
		t.Fatalf("build the test image: %v", imageErr)
	}
	return imageName
}

func removeImage() {
	if imageName != "" {
		if _, err := run(osexec.Command("docker", "rmi", "-f", imageName)); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// testContainer is a created, not started, container of the test image.
type testContainer struct {
	name string
	addr string // where svc listens, on the host's loopback
}

// create creates a container listening on a free loopback port, with
// args added to docker create before the image (-e, --no-healthcheck...);
// it is removed when the test ends.
func create(t *testing.T, args ...string) testContainer {
	t.Helper()
	img := image(t)
	c := testContainer{
		name: fmt.Sprintf("resilience-test-%d-%d", os.Getpid(), names.Add(1)),
		addr: freeAddr(t),
	}
	// Host networking: the default bridge is off on this machine, and the
	// test must reach the server on the host's loopback.
	argv := []string{"create", "--name", c.name, "--label", "resilience-test=docker", "--network", "host", "-e", "LISTEN=" + c.addr}
	argv = append(argv, args...)
	dockerCLI(t, append(argv, img)...)
	t.Cleanup(func() {
		if _, err := run(osexec.Command("docker", "rm", "-f", c.name)); err != nil {
			t.Error(err)
		}
	})
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventually calls check until it returns nil, failing the test with the
// last error if within passes first.
func eventually(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(url string) (string, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

func TestEngine_lifecycle(t *testing.T) {
	needDocker(t)
	t.Parallel()
	c := create(t)
	b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name})
	ctx := context.Background()

	t.Run("created", func(t *testing.T) {
		s, err := b.Inspect(ctx)
		if err != nil || s.Running || s.Status != "created" || !s.StartedAt.IsZero() {
			t.Fatalf("Inspect: %+v, %v", s, err)
		}
		err = docker.Ready{Backend: b}.Check(ctx)
		if want := "container " + c.name + " is not running (created)"; err == nil || err.Error() != want {
			t.Fatalf("Check: %v, want %s", err, want)
		}
		// The engine's own spelling of the name, as docker inspect shows it.
		slash := docker.New(docker.Options{Socket: engineSocket(), Container: "/" + c.name})
		if s, err := slash.Inspect(ctx); err != nil || s.Status != "created" {
			t.Fatalf("Inspect /%s: %+v, %v", c.name, s, err)
		}
	})

	t.Run("start until ready", func(t *testing.T) {
		// Through service.Unit, as the node drives it.
		u := service.Unit{
			Backend:       b,
			Ready:         docker.Ready{Backend: b},
			StartTimeout:  15 * time.Second,
			ReadyInterval: 100 * time.Millisecond,
		}
		begin := time.Now()
		if err := u.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Logf("ready after %s", time.Since(begin).Round(time.Millisecond))
		s, err := b.Inspect(ctx)
		if err != nil || !s.Running || s.Status != "running" || s.Health != "healthy" {
			t.Fatalf("Inspect: %+v, %v", s, err)
		}
		if time.Since(s.StartedAt) > time.Minute || s.StartedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("StartedAt %s is not about now", s.StartedAt)
		}
		if body, err := get("http://" + c.addr + "/"); err != nil || body != "svc" {
			t.Fatalf("GET: %q, %v", body, err)
		}
	})

	t.Run("start twice", func(t *testing.T) {
		before, _ := b.Inspect(ctx)
		if err := b.Start(ctx); err != nil {
			t.Fatalf("second Start: %v", err)
		}
		after, err := b.Inspect(ctx)
		if err != nil || !after.StartedAt.Equal(before.StartedAt) {
			t.Fatalf("second Start restarted the container: %s then %s (%v)", before.StartedAt, after.StartedAt, err)
		}
	})

	t.Run("stop", func(t *testing.T) {
		begin := time.Now()
		if err := b.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		// svc exits on SIGTERM: no need to wait for the kill.
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("Stop took %s", d)
		}
		running, err := b.Running(ctx)
		if err != nil || running {
			t.Fatalf("Running: %v, %v", running, err)
		}
		s, err := b.Inspect(ctx)
		if err != nil || s.Status != "exited" || s.ExitCode != 0 {
			t.Fatalf("Inspect: %+v, %v", s, err)
		}
		if _, err := get("http://" + c.addr + "/"); err == nil {
			t.Fatal("server still answers")
		}
	})

	t.Run("stop twice", func(t *testing.T) {
		if err := b.Stop(ctx); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
	})

	t.Run("start again", func(t *testing.T) {
		if err := b.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		eventually(t, 10*time.Second, func() error { return docker.Ready{Backend: b}.Check(ctx) })
	})
}

func TestEngine_stop(t *testing.T) {
	needDocker(t)
	t.Parallel()

	t.Run("kills after StopTimeout", func(t *testing.T) {
		t.Parallel()
		c := create(t, "-e", "SVC_IGNORE_TERM=1", "--no-healthcheck")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name, StopTimeout: time.Second})
		ctx := context.Background()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Stop only once svc listens, so that it has its SIGTERM handler.
		eventually(t, 10*time.Second, func() error { _, err := get("http://" + c.addr + "/"); return err })
		begin := time.Now()
		if err := b.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		d := time.Since(begin)
		t.Logf("stopped after %s", d.Round(time.Millisecond))
		if d < time.Second || d > 6*time.Second {
			t.Fatalf("Stop took %s, want a little more than the 1s StopTimeout", d)
		}
		s, err := b.Inspect(ctx)
		if err != nil || s.Running || s.ExitCode != 137 {
			t.Fatalf("Inspect: %+v, %v; want killed (137)", s, err)
		}
	})

	t.Run("ctx cancelled", func(t *testing.T) {
		t.Parallel()
		c := create(t, "-e", "SVC_IGNORE_TERM=1", "--no-healthcheck")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name, StopTimeout: 3 * time.Second})
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error { _, err := get("http://" + c.addr + "/"); return err })
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		begin := time.Now()
		err := b.Stop(ctx)
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("Stop returned %s after the cancel", d-300*time.Millisecond)
		}
		if want := "container " + c.name + ": context canceled"; !errors.Is(err, context.Canceled) || err.Error() != want {
			t.Fatalf("Stop: %v, want %s", err, want)
		}
		// As documented: the engine carries on and kills it at 3s.
		eventually(t, 8*time.Second, func() error {
			if running, err := b.Running(context.Background()); err != nil || running {
				return fmt.Errorf("running %v, %v", running, err)
			}
			return nil
		})
	})
}

func TestEngine_ready(t *testing.T) {
	needDocker(t)
	t.Parallel()
	ctx := context.Background()

	t.Run("unhealthy", func(t *testing.T) {
		t.Parallel()
		c := create(t, "-e", "SVC_UNHEALTHY=database down")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name})
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		want := "container " + c.name + " is unhealthy: status 503: database down"
		eventually(t, 10*time.Second, func() error {
			if err := (docker.Ready{Backend: b}).Check(ctx); err == nil || err.Error() != want {
				return fmt.Errorf("Check: %v, want %s", err, want)
			}
			return nil
		})
	})

	t.Run("exited", func(t *testing.T) {
		t.Parallel()
		c := create(t, "-e", "SVC_EXIT=2")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name})
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		want := "container " + c.name + " exited (code 2)"
		eventually(t, 10*time.Second, func() error {
			if err := (docker.Ready{Backend: b}).Check(ctx); err == nil || err.Error() != want {
				return fmt.Errorf("Check: %v, want %s", err, want)
			}
			return nil
		})
	})

	t.Run("no healthcheck", func(t *testing.T) {
		t.Parallel()
		c := create(t, "--no-healthcheck")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name})
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Ready as soon as it runs, before svc even listens.
		if err := (docker.Ready{Backend: b}).Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if s, err := b.Inspect(ctx); err != nil || s.Health != "" {
			t.Fatalf("Inspect: %+v, %v", s, err)
		}
	})

	t.Run("start refused", func(t *testing.T) {
		t.Parallel()
		c := create(t, "--entrypoint", "/nope")
		b := docker.New(docker.Options{Socket: engineSocket(), Container: c.name})
		err := b.Start(ctx)
		if err == nil || !strings.HasPrefix(err.Error(), "container "+c.name+": ") || !strings.Contains(err.Error(), `"/nope"`) {
			t.Fatalf("Start: %v, want the engine's reason", err)
		}
		err = docker.Ready{Backend: b}.Check(ctx)
		if err == nil || !strings.HasPrefix(err.Error(), "container "+c.name+" is not running (created): ") || !strings.Contains(err.Error(), `"/nope"`) {
			t.Fatalf("Check: %v", err)
		}
	})
}

func TestEngine_noSuchContainer(t *testing.T) {
	needDocker(t)
	t.Parallel()
	name := fmt.Sprintf("resilience-test-%d-missing", os.Getpid())
	b := docker.New(docker.Options{Socket: engineSocket(), Container: name})
	want := `no such container "` + name + `": create it first (docker create --name ` + name + ` ...)`
	ctx := context.Background()
	for op, call := range map[string]func(context.Context) error{
		"Start":   b.Start,
		"Stop":    b.Stop,
		"Check":   docker.Ready{Backend: b}.Check,
		"Running": func(ctx context.Context) error { _, err := b.Running(ctx); return err },
	} {
		if err := call(ctx); err == nil || err.Error() != want || !errors.Is(err, docker.ErrNoSuchContainer) {
			t.Errorf("%s:\n got %v\nwant %s", op, err, want)
		}
	}
}
