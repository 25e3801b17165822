package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// runSampleService is the lab's stand-in for Asterisk and the CC
// containers: an HTTP server that says what it is.
func runSampleService(ctx context.Context, e *env, args []string) error {
	fs := e.flags("sample-service", "--listen ADDR --text TEXT")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	text := fs.String("text", "sample service", "what to answer")
	delay := fs.Duration("delay", 0, "wait this long before listening (a slow start)")
	sipAddr := fs.String("sip", "", "also answer SIP requests (OPTIONS...) on this address, UDP and TCP")
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
	if *sipAddr != "" {
		stop, err := serveSIP(*sipAddr, *text)
		if err != nil {
			ln.Close()
			return err
		}
		defer stop()
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

// serveSIP answers every SIP request with 200 OK naming the service, over
// UDP and TCP: enough for OPTIONS pings through the Edge. It returns a
// function that stops it.
func serveSIP(addr, text string) (stop func(), err error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := sipAnswer(buf[:n], text); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					c.SetReadDeadline(time.Now().Add(time.Minute))
					msg, err := readSIPHead(r)
					if err != nil {
						return
					}
					if resp := sipAnswer(msg, text); resp != nil {
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return func() { pc.Close(); ln.Close() }, nil
}

// readSIPHead reads one message's head (requests without a body).
func readSIPHead(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	for len(msg) < 16<<10 {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		msg = append(msg, line...)
		if len(bytes.TrimSpace(line)) == 0 && len(bytes.TrimSpace(msg)) > 0 {
			return msg, nil
		}
	}
	return nil, errors.New("message too large")
}

// sipAnswer builds the 200 OK to a request, or nil for a response.
func sipAnswer(msg []byte, text string) []byte {
	lines := strings.Split(strings.ReplaceAll(string(msg), "\r\n", "\n"), "\n")
	if len(lines) == 0 || strings.HasPrefix(lines[0], "SIP/2.0") || !strings.HasSuffix(strings.TrimSpace(lines[0]), "SIP/2.0") {
		return nil
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 200 OK\r\n")
	for _, l := range lines[1:] {
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
			b.WriteString(strings.TrimRight(l, "\r") + "\r\n")
		}
	}
	fmt.Fprintf(&b, "X-Answered-By: %s\r\nContent-Length: 0\r\n\r\n", text)
	return []byte(b.String())
}
