package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SIP is relayed at layer 4, without parsing: the Edge only has to bring
// phones' packets to the Active XiVO's SIP service and its answers back
// from the one address phones know.
//
// UDP has no connections, so the Edge keeps a flow per client address:
// a connected socket of its own towards the chosen backend, whose answers
// go back to the client from the Edge's listening socket. A switch drops
// the old side's flows; the client's next datagram opens a flow to the
// new side. Flows expire when idle and are bounded in number.
//
// TCP is relayed connection for connection, each a session of its target
// closed on a switch (after Drain) so that the phone reconnects, through
// the Edge, to the new side.

// udpFlowBuf is the largest datagram relayed from a backend; larger ones
// are dropped rather than truncated. A buffer is held per flow, so this
// times SIPMaxFlows bounds the memory.
const udpFlowBuf = 16 << 10

type flowKey = netip.AddrPort

type sipRelay struct {
	e     *Edge
	r     *route
	cfg   SIPRoute
	udp   *net.UDPConn
	tcp   net.Listener
	bound atomic.Pointer[string]
	// raddr is each target's UDP address, resolved once at start so that
	// no DNS lookup happens on the datagram path.
	raddr map[*target]*net.UDPAddr

	mu     sync.Mutex
	flows  map[flowKey]*flow
	closed bool

	closeOnce sync.Once
}

type flow struct {
	client netip.AddrPort
	t      *target
	up     *net.UDPConn
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
}

// listen opens the route's sockets. UDP and TCP share one port; when the
// port is 0 (tests) TCP picks it and UDP follows, retried a few times in
// case the UDP port is taken.
func (s *sipRelay) listen() error {
	s.raddr = map[*target]*net.UDPAddr{}
	if s.cfg.UDP {
		for _, t := range s.r.sides {
			a, err := net.ResolveUDPAddr("udp", t.b.cfg.Address)
			if err != nil {
				return fmt.Errorf("resolve %s: %w", t.b.cfg.Name, err)
			}
			s.raddr[t] = a
		}
	}
	host, port, _ := net.SplitHostPort(s.cfg.Listen)
	var err error
	for try := 0; try < 20; try++ {
		var tcp net.Listener
		if s.cfg.TCP {
			if tcp, err = net.Listen("tcp", s.cfg.Listen); err != nil {
				return err
			}
		}
		p := port
		if tcp != nil {
			_, p, _ = net.SplitHostPort(tcp.Addr().String())
		}
		var udp *net.UDPConn
		if s.cfg.UDP {
			var ua *net.UDPAddr
			if ua, err = net.ResolveUDPAddr("udp", net.JoinHostPort(host, p)); err == nil {
				udp, err = net.ListenUDP("udp", ua)
			}
			if err != nil {
				if tcp != nil {
					tcp.Close()
					if port == "0" {
						continue
					}
				}
				return err
			}
		}
		addr := ""
		if tcp != nil {
			s.tcp = newLimitListener(tcp, s.e.opts.SIPMaxFlows)
			addr = tcp.Addr().String()
		}
		if udp != nil {
			s.udp = udp
			addr = udp.LocalAddr().String()
		}
		s.bound.Store(&addr)
		return nil
	}
	return err
}

func (s *sipRelay) addr() string {
	if p := s.bound.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *sipRelay) start() {
	if s.udp != nil {
		s.e.goTracked(s.serveUDP)
		s.e.goTracked(s.expire)
	}
	if s.tcp != nil {
		s.e.goTracked(s.serveTCP)
	}
}

// closeListeners closes the sockets and every flow; safe twice.
func (s *sipRelay) closeListeners() {
	s.closeOnce.Do(func() {
		if s.udp != nil {
			s.udp.Close()
		}
		if s.tcp != nil {
			s.tcp.Close()
		}
		s.mu.Lock()
		s.closed = true
		for _, f := range s.flows {
			s.dropLocked(f)
		}
		s.mu.Unlock()
	})
}

func (s *sipRelay) serveUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, client, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !sleep(s.e.ctx, 10*time.Millisecond) {
				return
			}
			continue
		}
		t := s.r.cur.Load()
		if t == nil {
			s.e.m.udpDropped.WithLabelValues(s.r.name, "no_backend").Inc()
			continue
		}
		f := s.flowFor(client, t)
		if f == nil {
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := f.up.Write(buf[:n]); err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			f.t.b.connectFailed(err)
		}
	}
}

// flowFor finds or opens the client's flow to t.
func (s *sipRelay) flowFor(client netip.AddrPort, t *target) *flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if f := s.flows[client]; f != nil {
		if f.t == t {
			return f
		}
		s.dropLocked(f) // a flow left by a switch not yet swept
	}
	if len(s.flows) >= s.e.opts.SIPMaxFlows {
		s.e.m.udpDropped.WithLabelValues(s.r.name, "flow_limit").Inc()
		return nil
	}
	up, err := net.DialUDP("udp", nil, s.raddr[t])
	if err != nil {
		s.e.log.Warn("edge sip flow", "route", s.r.name, "backend", t.b.cfg.Name, "err", err)
		s.e.m.udpDropped.WithLabelValues(s.r.name, "socket").Inc()
		return nil
	}
	f := &flow{client: client, t: t, up: up}
	s.flows[client] = f
	t.flows.Add(1)
	s.e.m.flows.WithLabelValues(s.r.name).Inc()
	s.e.goTracked(func() { s.pump(f) })
	return f
}

// pump relays a backend's datagrams back to the flow's client.
func (s *sipRelay) pump(f *flow) {
	buf := make([]byte, udpFlowBuf)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// An ICMP port unreachable: the backend's SIP service
				// is not listening. It counts as a failed connection.
				f.t.b.connectFailed(err)
				continue
			}
			s.drop(f)
			return
		}
		if n == len(buf) {
			s.e.m.udpDropped.WithLabelValues(s.r.name, "too_large").Inc()
			continue
		}
		f.t.b.connected()
		f.last.Store(time.Now().UnixNano())
		s.udp.WriteToUDPAddrPort(buf[:n], f.client)
	}
}

func (s *sipRelay) drop(f *flow) {
	s.mu.Lock()
	s.dropLocked(f)
	s.mu.Unlock()
}

func (s *sipRelay) dropLocked(f *flow) {
	if s.flows[f.client] == f {
		delete(s.flows, f.client)
		f.t.flows.Add(-1)
		s.e.m.flows.WithLabelValues(s.r.name).Dec()
	}
	f.up.Close()
}

// dropFlows moves a switched route's flows: they close now, and the
// clients' next datagrams open flows to the new side.
func (s *sipRelay) dropFlows(t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.flows {
		if f.t == t {
			s.dropLocked(f)
		}
	}
}

// expire closes flows idle for longer than SIPFlowIdle.
func (s *sipRelay) expire() {
	idle := s.e.opts.SIPFlowIdle
	t := time.NewTicker(min(max(idle/4, 10*time.Millisecond), 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.e.ctx.Done():
			return
		case now := <-t.C:
			limit := now.Add(-idle).UnixNano()
			s.mu.Lock()
			for _, f := range s.flows {
				if f.last.Load() < limit {
					s.dropLocked(f)
				}
			}
			s.mu.Unlock()
		}
	}
}

func (s *sipRelay) serveTCP() {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.e.log.Warn("edge sip accept", "route", s.r.name, "err", err)
			if !sleep(s.e.ctx, 50*time.Millisecond) {
				return
			}
			continue
		}
		s.e.goTracked(func() { s.relayTCP(c) })
	}
}

// relayTCP relays one SIP TCP connection to the chosen backend (or, if
// that one refuses, to the other side when usable), as a session closed
// on a switch.
func (s *sipRelay) relayTCP(c net.Conn) {
	t := s.r.cur.Load()
	if t == nil {
		s.e.m.tcpRefused.WithLabelValues(s.r.name).Inc()
		c.Close()
		return
	}
	up, err := s.dialTCP(t)
	if err != nil && t.other.usable.Load() {
		t = t.other
		up, err = s.dialTCP(t)
	}
	if err != nil {
		s.e.m.tcpRefused.WithLabelValues(s.r.name).Inc()
		c.Close()
		return
	}
	stop := func() {
		c.Close()
		up.Close()
	}
	id, ok := t.sessions.add(stop)
	if !ok {
		stop()
		return
	}
	defer t.sessions.remove(id)
	if s.r.cur.Load() != t {
		stop() // switched while connecting
		return
	}
	t.sessGauge.Inc()
	defer t.sessGauge.Dec()
	raw := c
	if lc, ok := c.(*limitConn); ok {
		raw = lc.Conn // a *net.TCPConn both ways lets io.Copy splice
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, raw)
		stop()
	}()
	io.Copy(raw, up)
	stop()
	<-done
}

func (s *sipRelay) dialTCP(t *target) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.e.ctx, s.e.opts.DialTimeout)
	defer cancel()
	up, err := s.e.dialer.DialContext(ctx, "tcp", t.b.cfg.Address)
	if err != nil {
		if s.e.ctx.Err() == nil {
			t.b.connectFailed(err)
		}
		return nil, err
	}
	t.b.connected()
	return up, nil
}
