package edge

import (
	"net"
	"sync"
)

// sessionSet holds a target's long-lived sessions (upgraded HTTP, SIP TCP)
// by the function that ends each, so that a switch or Close can end them.
type sessionSet struct {
	mu     sync.Mutex
	next   uint64
	m      map[uint64]func()
	closed bool
	wg     sync.WaitGroup // sessions not yet removed, for shutdown
}

// add registers a session; false once the set is shut down.
func (s *sessionSet) add(stop func()) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	if s.m == nil {
		s.m = map[uint64]func(){}
	}
	s.next++
	s.m[s.next] = stop
	s.wg.Add(1)
	return s.next, true
}

func (s *sessionSet) remove(id uint64) {
	s.mu.Lock()
	_, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		s.wg.Done()
	}
}

func (s *sessionSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// closeAll ends every session; each removes itself as it ends.
func (s *sessionSet) closeAll() {
	s.mu.Lock()
	stops := make([]func(), 0, len(s.m))
	for _, stop := range s.m {
		stops = append(stops, stop)
	}
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// shutdown refuses new sessions, ends the open ones and waits for them.
func (s *sessionSet) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeAll()
	s.wg.Wait()
}

// connSet tracks a target's backend connections, so that those left
// behind by a switch (a stream still open) can be closed.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (s *connSet) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*trackedConn]struct{}{}
	}
	s.m[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// limitListener bounds the connections accepted at once: past the limit
// new clients wait in the kernel's backlog instead of costing the Edge
// memory (a goroutine and buffers each).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite passes a half-close through, as ReverseProxy uses it on an
// upgraded connection whose backend finished writing.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
