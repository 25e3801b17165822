// Package faultproxy is a TCP proxy that tests put between two nodes to
// cut what crosses it: everything (the far node looks down), or only the
// HTTP requests to some paths (an event stream cut while plain requests
// still pass).
package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Proxy forwards connections from its loopback address to a target.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	all     bool     // refuse everything
	paths   []string // refuse requests whose path starts with one of these
	conns   map[net.Conn]string
	stopped bool
}

// Start listens on 127.0.0.1 and forwards to target ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]string{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's address as an http URL.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// CutAll closes every connection and refuses new ones while on.
func (p *Proxy) CutAll(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = on
	if on {
		for c := range p.conns {
			c.Close()
		}
	}
}

// CutPaths closes the connections whose first request was for a path with
// one of these prefixes, and refuses new ones; none restores them.
func (p *Proxy) CutPaths(prefixes ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paths = prefixes
	for c, path := range p.conns {
		if p.blockedLocked(path) {
			c.Close()
		}
	}
}

func (p *Proxy) blockedLocked(path string) bool {
	if p.all {
		return true
	}
	for _, pre := range p.paths {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.stopped = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// track registers c under path unless it is to be refused.
func (p *Proxy) track(c net.Conn, path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.blockedLocked(path) {
		return false
	}
	p.conns[c] = path
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReaderSize(client, 4096)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	client.SetReadDeadline(time.Time{})
	path := ""
	if f := strings.Fields(line); len(f) >= 2 {
		path = f[1]
	}
	if !p.track(client, path) {
		return
	}
	defer p.untrack(client)
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !p.track(server, path) {
		return
	}
	defer p.untrack(server)
	if _, err := io.WriteString(server, line); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst net.Conn, src io.Reader) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			dst.Close()
		}
		if tcp, ok := dst.(*net.TCPConn); ok {
			tcp.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, br)
	go pipe(client, server)
	<-done
	client.Close()
	server.Close()
	<-done
}
