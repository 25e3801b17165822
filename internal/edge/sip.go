package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SIP is relayed at layer 4, without parsing: the Edge only has to bring
// phones' packets to the Active XiVO's SIP service and its answers back
// from the one address phones know. Only a request that finds no side is
// read, to answer it.
//
// UDP has no connections, so the Edge keeps a flow per client address:
// a connected socket of its own towards the chosen backend, whose answers
// go back to the client from the Edge's listening socket. A switch drops
// the old side's flows; the client's next datagram opens a flow to the
// new side. Flows expire when idle and are bounded in number.
//
// While no side is usable, a request over UDP is answered 503 with
// Retry-After (see sip503) rather than dropped, so that a phone gives up
// at once instead of retransmitting for 32 s. Over TCP the connection is
// closed at once (answering would need the stream's framing).
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

	// Owned by serveUDP: the 503 being written and its rate limit.
	out   []byte
	limit tokenBucket
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
			s.unavailable(buf[:n], client)
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

// sip503PerSecond bounds the 503s a UDP route sends, so that a flood of
// spoofed requests cannot aim the Edge's answers at a victim.
const sip503PerSecond = 1000

// sipMaxHeaderLines bounds the work spent on a request to answer 503.
const sipMaxHeaderLines = 64

// unavailable answers req, which found no usable side, with a 503 (the
// route's unavailable counter, as HTTP's maintenance page) or, when it
// must not be answered or the rate limit is reached, drops it. It runs on
// serveUDP's goroutine.
func (s *sipRelay) unavailable(req []byte, client netip.AddrPort) {
	if a := sip503(s.out[:0], req, s.e.retryAfter[0]); a != nil && s.limit.allow(time.Now()) {
		s.out = a
		if _, err := s.udp.WriteToUDPAddrPort(a, client); err == nil {
			s.r.unavailable.Inc()
			return
		}
	}
	s.e.m.udpDropped.WithLabelValues(s.r.name, "no_backend").Inc()
}

// tokenBucket allows rate events a second, in bursts of up to rate.
// The zero value allows sip503PerSecond. Not safe for concurrent use.
type tokenBucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	rate := b.rate
	if rate <= 0 {
		rate = sip503PerSecond
	}
	if b.last.IsZero() {
		b.tokens = rate
	} else {
		b.tokens = min(rate, b.tokens+max(0, now.Sub(b.last).Seconds())*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sip503 appends to dst the 503 Service Unavailable a stateless UAS
// answers req with (RFC 3261 8.2.6): its Via headers in order, From, To
// with a tag, Call-ID and CSeq, then Retry-After and Content-Length: 0.
// It returns nil for what must get no answer: a response, an ACK, what
// does not parse as a request (within udpFlowBuf bytes and
// sipMaxHeaderLines lines), and a request smaller than its answer (no
// amplification). Compact header names and folded lines are understood.
func sip503(dst, req []byte, retryAfter string) []byte {
	if len(req) > udpFlowBuf {
		return nil
	}
	line, rest, ok := sipLine(req)
	if !ok || bytes.HasPrefix(line, []byte("SIP/2.0")) {
		return nil // a response is never answered
	}
	method, ok := sipRequestLine(line)
	if !ok || method == "ACK" {
		return nil // an ACK gets no response
	}
	var vias [][]byte
	var from, to, callID, cseq []byte
	var last *[]byte // the value a folded line continues; nil if not kept
	for n := 0; ; n++ {
		if line, rest, ok = sipLine(rest); !ok {
			return nil
		}
		if len(line) == 0 {
			break // the end of the headers; the body does not matter
		}
		if n == sipMaxHeaderLines {
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if n == 0 {
				return nil
			}
			if last != nil { // unfold into a copy, never into req
				*last = bytes.Join([][]byte{*last, bytes.TrimSpace(line)}, []byte(" "))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		name, value = bytes.TrimRight(name, " \t"), bytes.TrimSpace(value)
		if !ok || !sipToken(name) {
			return nil
		}
		var one *[]byte
		switch {
		case sipIs(name, "Via", "v"):
			vias = append(vias, value)
			last = &vias[len(vias)-1]
			continue
		case sipIs(name, "From", "f"):
			one = &from
		case sipIs(name, "To", "t"):
			one = &to
		case sipIs(name, "Call-ID", "i"):
			one = &callID
		case sipIs(name, "CSeq", ""):
			one = &cseq
		default:
			last = nil
			continue
		}
		if *one != nil {
			return nil // twice
		}
		if value == nil {
			value = []byte{} // seen, though empty
		}
		*one, last = value, one
	}
	if len(vias) == 0 || len(from) == 0 || len(to) == 0 || len(callID) == 0 || len(cseq) == 0 {
		return nil // missing, or empty
	}
	for _, v := range vias {
		if len(v) == 0 {
			return nil
		}
	}
	if f := bytes.Fields(cseq); len(f) != 2 || !sipDigits(f[0]) || string(f[1]) != method {
		return nil // CSeq: number and the request's method
	}
	dst = append(dst, "SIP/2.0 503 Service Unavailable\r\n"...)
	for _, v := range vias {
		dst = append(append(append(dst, "Via: "...), v...), "\r\n"...)
	}
	dst = append(append(append(dst, "From: "...), from...), "\r\n"...)
	dst = append(append(dst, "To: "...), to...)
	if !sipHasTag(to) {
		// The same request gets the same tag (RFC 3261 8.2.7), so a
		// retransmission gets the same answer.
		h := fnv.New64a()
		for _, v := range [][]byte{callID, from, cseq, vias[0]} {
			h.Write(v)
			h.Write([]byte{0})
		}
		dst = strconv.AppendUint(append(dst, ";tag="...), h.Sum64(), 16)
	}
	dst = append(append(append(dst, "\r\nCall-ID: "...), callID...), "\r\n"...)
	dst = append(append(append(dst, "CSeq: "...), cseq...), "\r\n"...)
	dst = append(append(append(dst, "Retry-After: "...), retryAfter...), "\r\nContent-Length: 0\r\n\r\n"...)
	if len(dst) > len(req) {
		return nil
	}
	return dst
}

// sipLine cuts the first line off b: CRLF or a bare LF ends it. A line
// without its end, or with a control character, is malformed.
func sipLine(b []byte) (line, rest []byte, ok bool) {
	line, rest, ok = bytes.Cut(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return line, rest, ok
}

// sipRequestLine returns the method of "METHOD SP Request-URI SP SIP/2.0".
func sipRequestLine(line []byte) (string, bool) {
	method, rest, _ := bytes.Cut(line, []byte(" "))
	uri, version, _ := bytes.Cut(rest, []byte(" "))
	if !sipToken(method) || len(uri) == 0 || !bytes.EqualFold(version, []byte("SIP/2.0")) {
		return "", false
	}
	return string(method), true
}

// sipToken reports whether b is a non-empty RFC 3261 token.
func sipToken(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0) {
			return false
		}
	}
	return len(b) > 0
}

func sipDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0 && len(b) <= 10
}

// sipIs reports whether a header name is long or its compact form.
func sipIs(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || compact != "" && bytes.EqualFold(name, []byte(compact))
}

// sipHasTag reports whether a From or To value has a tag parameter: its
// parameters follow the name-addr's '>' or, in a bare addr-spec (which
// cannot hold URI parameters), the first ';'.
func sipHasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	} else if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[i:]
	} else {
		return false
	}
	for len(v) > 0 {
		var p []byte
		p, v, _ = bytes.Cut(v, []byte(";"))
		if name, _, _ := bytes.Cut(p, []byte("=")); bytes.EqualFold(bytes.TrimSpace(name), []byte("tag")) {
			return true
		}
	}
	return false
}
