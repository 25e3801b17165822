package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runSampleService is the lab's stand-in for Asterisk and the CC
// containers: an HTTP server that says what it is.
func runSampleService(ctx context.Context, e *env, args []string) error {
	fs := e.flags("sample-service", "--listen ADDR --text TEXT")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	text := fs.String("text", "sample service", "what to answer")
	delay := fs.Duration("delay", 0, "wait this long before listening (a slow start)")
	if err := parse(fs, args); err != nil {
		return err
	}
	select {
	case <-time.After(*delay):
	case <-ctx.Done():
		return nil
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, *text+"\n")
		}),
	}
	fmt.Fprintf(e.stdout, "%s listening on %s\n", *text, ln.Addr())
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
