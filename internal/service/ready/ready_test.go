package ready_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/xivo-resilience/resilience/internal/service/ready"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTCP_Check(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if conn, err := ln.Accept(); err == nil {
			conn.Close()
		}
	}()

	t.Run("listening", func(t *testing.T) {
		if err := (ready.TCP{Address: addr}).Check(context.Background()); err != nil {
			t.Fatalf("Check: %v", err)
		}
		<-accepted
	})

	ln.Close()
	t.Run("closed", func(t *testing.T) {
		err := (ready.TCP{Address: addr}).Check(context.Background())
		if want := "dial tcp " + addr + ": connect: connection refused"; err == nil || err.Error() != want {
			t.Fatalf("Check: %v, want %s", err, want)
		}
	})
}

func TestHTTP_Check(t *testing.T) {
	var status atomic.Int32
	var bodyRead atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(status.Load())
		w.WriteHeader(code)
		if code == http.StatusServiceUnavailable {
			fmt.Fprintln(w, "database not ready")
			fmt.Fprintln(w, "more details")
		}
		if code == http.StatusOK {
			// A large body: the check must still return, and drain it.
			_, err := w.Write(make([]byte, 32<<10))
			bodyRead.Store(err == nil)
		}
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name string
		code int
		want string // error; empty for ready
	}{
		{"ok", http.StatusOK, ""},
		{"no content", http.StatusNoContent, ""},
		{"unavailable", http.StatusServiceUnavailable, "GET " + srv.URL + "/health: status 503 Service Unavailable: database not ready"},
		{"not found", http.StatusNotFound, "GET " + srv.URL + "/health: status 404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status.Store(int32(tc.code))
			err := (ready.HTTP{URL: srv.URL + "/health"}).Check(context.Background())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v, want ready", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Check: %v, want %s", err, tc.want)
			}
		})
	}
	if !bodyRead.Load() {
		t.Error("body of the 200 answer not read")
	}

	t.Run("own client", func(t *testing.T) {
		status.Store(http.StatusOK)
		client := srv.Client()
		defer client.CloseIdleConnections()
		if err := (ready.HTTP{URL: srv.URL, Client: client}).Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no answer in time", func(t *testing.T) {
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer slow.Close()
		defer close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := (ready.HTTP{URL: slow.URL}).Check(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Check: %v, want deadline exceeded", err)
		}
	})

	t.Run("bad URL", func(t *testing.T) {
		if err := (ready.HTTP{URL: "://nope"}).Check(context.Background()); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestCommand_Check(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		if err := (ready.Command{Command: "true"}).Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("not ready", func(t *testing.T) {
		err := (ready.Command{Command: "echo checking; echo not yet >&2; exit 1"}).Check(context.Background())
		if want := "exit status 1: not yet"; err == nil || err.Error() != want {
			t.Fatalf("Check: %v, want %s", err, want)
		}
	})

	t.Run("env and dir", func(t *testing.T) {
		dir := t.TempDir()
		c := ready.Command{Command: `test "$PROBE" = yes && test -e here`, Env: map[string]string{"PROBE": "yes"}, Dir: dir}
		if err := c.Check(context.Background()); err == nil {
			t.Fatal("ready before the file exists")
		}
		c.Command = `touch here && ` + c.Command
		if err := c.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("killed when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := (ready.Command{Command: "echo waiting; sleep 60"}).Check(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasSuffix(err.Error(), ": waiting") {
			t.Fatalf("Check: %v, want deadline exceeded and the output", err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Fatalf("Check took %s", d)
		}
	})

	t.Run("no command", func(t *testing.T) {
		if err := (ready.Command{}).Check(context.Background()); err == nil {
			t.Fatal("no error")
		}
	})
}
