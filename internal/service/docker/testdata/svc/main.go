// Command svc is the whole of the docker package's test image: an HTTP
// server whose health, exit and signal handling a test chooses through the
// environment at docker create, since an image FROM scratch has no shell to
// script them. The same binary is the image's HEALTHCHECK (svc -health).
//
// Environment:
//
//	LISTEN           address to serve on (default 127.0.0.1:0)
//	SVC_UNHEALTHY    if set, /health answers 503 with this text
//	SVC_EXIT         if set, exit at once with this code
//	SVC_IGNORE_TERM  if set, ignore SIGTERM and SIGINT (wait for SIGKILL)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("health", false, "probe the server on LISTEN: exit 0 if healthy, 1 if not")
	flag.Parse()
	addr := os.Getenv("LISTEN")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if *health {
		if err := probe(addr); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		return
	}
	if code := os.Getenv("SVC_EXIT"); code != "" {
		n, err := strconv.Atoi(code)
		if err != nil {
			n = 3
		}
		fmt.Fprintf(os.Stderr, "exiting with code %d as asked\n", n)
		os.Exit(n)
	}
	if err := serve(addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serve answers until SIGTERM, then shuts down cleanly and returns nil.
func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "listening on", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if msg := os.Getenv("SVC_UNHEALTHY"); msg != "" {
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "svc")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// As PID 1 in its container, the process gets no default signal
	// handling from the kernel: it must act on SIGTERM itself, or not.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case err := <-served:
			return err
		case sig := <-sigs:
			if os.Getenv("SVC_IGNORE_TERM") != "" {
				fmt.Fprintln(os.Stderr, "ignoring", sig)
				continue
			}
			fmt.Fprintln(os.Stderr, "stopping on", sig)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				return err
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
}

// probe GETs /health once.
func probe(addr string) error {
	if strings.HasSuffix(addr, ":0") {
		return fmt.Errorf("LISTEN=%s has no fixed port to probe", addr)
	}
	// A zero Transport uses no proxy, whatever the container's environment.
	client := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
