// Command peerserver is the floor the agent's API is compared with: a
// minimal net/http server that answers GET /api/v1/status with a constant
// body (the agent's own status bytes) behind the same check as the agent
// (a bearer token, compared in constant time), with the agent's headers
// and http.Server settings. It is what Go's HTTP stack alone costs, for
// requests per second and for memory.
//
//	peerserver --listen 127.0.0.6:PORT --token-file F --body F
package main

import (
	"crypto/subtle"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.6:0", "address to listen on (loopback)")
	tokenFile := flag.String("token-file", "", "file holding the bearer token to accept")
	bodyFile := flag.String("body", "", "file holding the status body to serve")
	flag.Parse()
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		fail(err)
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fail(err)
	}
	want := []byte(strings.TrimSpace(string(token)))
	if len(want) == 0 {
		fail(fmt.Errorf("%s: empty token", *tokenFile))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="resilience"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"missing or wrong bearer token"}}` + "\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "peerserver:", err)
	os.Exit(1)
}
