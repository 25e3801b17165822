package mds

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limits on connections. sipgo's own transport layer is not used: it
// starts a goroutine and a transaction (kept 32 s) per request, and logs
// every unparsable datagram with its content at Error, all unbounded under
// a flood. Here UDP is one goroutine and one buffer, and TCP has a
// connection cap and deadlines.
const (
	// maxTCPConns caps open TCP connections; more are closed at accept.
	maxTCPConns = 128
	// defaultTCPIdle is how long a new TCP connection has to authenticate
	// a REGISTER before it is closed; a trunk client needs milliseconds.
	// Once it has, the connection may stay idle up to MaxExpires plus a
	// minute, the time between two refreshes.
	defaultTCPIdle = 30 * time.Second
	// tcpWriteTimeout bounds a write to a client that does not read.
	tcpWriteTimeout = 5 * time.Second
	// udpReadBuf holds the largest datagram, so that an oversized one is
	// seen as such rather than silently truncated.
	udpReadBuf = 64 << 10
	// tcpReadBuf is the read size on a TCP connection. Small, because
	// sipgo's stream parser parses all the headers it has been given
	// before it checks the message size: reads of 4 KiB keep the work
	// spent on an oversized message near maxMessageSize.
	tcpReadBuf = 4 << 10
)

// serveUDP reads datagrams one at a time and answers each to its source
// address (RFC 3581 symmetric response routing; the client's Via may name
// an address we cannot reach, its source address we can).
func (r *Registrar) serveUDP(pc net.PacketConn) {
	buf := make([]byte, udpReadBuf)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("udp read", "error", err)
			continue
		}
		if n > maxMessageSize {
			r.log.Debug("drop oversized datagram", "source", addr.String(), "bytes", n)
			continue
		}
		data := buf[:n]
		if isKeepAlive(data) {
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := unmap(ua.AddrPort())
		if out := r.safeHandle(data, src, "UDP"); out != nil {
			if _, err := pc.WriteTo(out, addr); err != nil && !errors.Is(err, net.ErrClosed) {
				r.log.Debug("udp write", "dest", addr.String(), "error", err)
			}
		}
	}
}

// serveTCP accepts connections up to maxTCPConns.
func (r *Registrar) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: do not spin.
			r.log.Warn("tcp accept", "error", err)
			select {
			case <-r.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		r.mu.Lock()
		if r.closed || len(r.conns) >= maxTCPConns {
			r.mu.Unlock()
			r.log.Debug("refuse tcp connection", "source", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Go(func() { r.serveConn(c) })
	}
}

// serveConn frames messages on one TCP connection with sipgo's stream
// parser (Content-Length framing, bounded by maxMessageSize) and answers
// each on the same connection. A framing error leaves no boundary to
// resynchronise on, so it closes the connection.
func (r *Registrar) serveConn(c net.Conn) {
	defer func() {
		_ = c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	var src netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = unmap(ta.AddrPort())
	}
	par := r.parser.NewSIPStream()
	defer par.Close()
	buf := make([]byte, tcpReadBuf)
	// Until it authenticates, a connection has one deadline in all, so a
	// client trickling bytes cannot hold one of the maxTCPConns slots.
	authed := false
	deadline := time.Now().Add(r.tcpIdle)
	partial := false
	for {
		if authed {
			deadline = time.Now().Add(r.tcpAuthedIdle)
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return
		}
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		data := buf[:n]
		if !partial && isKeepAlive(data) {
			// RFC 5626 section 3.5.1: answer a double-CRLF ping with a
			// CRLF pong.
			if bytes.Equal(data, []byte("\r\n\r\n")) && !r.write(c, []byte("\r\n")) {
				return
			}
			continue
		}
		writeFailed := false
		err = par.ParseSIPStream(data, func(msg sip.Message) {
			if writeFailed {
				return
			}
			out, ok := r.safeServe(msg, src, "TCP")
			authed = authed || ok
			if out != nil && !r.write(c, out) {
				writeFailed = true
			}
		})
		if writeFailed {
			return
		}
		switch {
		case errors.Is(err, sip.ErrParseSipPartial):
			partial = true
		case err != nil:
			r.log.Debug("close tcp connection: bad framing", "source", src.String(), "error", err)
			return
		default:
			partial = false
		}
	}
}

func (r *Registrar) write(c net.Conn, b []byte) bool {
	if err := c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout)); err != nil {
		return false
	}
	_, err := c.Write(b)
	return err == nil
}

// safeHandle and safeServe keep a bug (ours or the parser's) on one
// message from taking the whole MDS down; the fuzzer calls handle without
// them so that such a bug still fails the tests.
func (r *Registrar) safeHandle(data []byte, src netip.AddrPort, transport string) (out []byte) {
	defer r.recoverPanic(src, &out)
	return r.handle(data, src, transport)
}

func (r *Registrar) safeServe(msg sip.Message, src netip.AddrPort, transport string) (out []byte, authed bool) {
	defer r.recoverPanic(src, &out)
	return r.serve(msg, src, transport)
}

func (r *Registrar) recoverPanic(src netip.AddrPort, out *[]byte) {
	if p := recover(); p != nil {
		r.log.Error("panic handling SIP message", "source", src.String(), "panic", p, "stack", string(debug.Stack()))
		*out = nil
	}
}

// isKeepAlive reports CRLF keep-alives (RFC 5626 section 3.5.1).
func isKeepAlive(b []byte) bool {
	return len(b) <= 4 && len(bytes.Trim(b, "\r\n")) == 0
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
