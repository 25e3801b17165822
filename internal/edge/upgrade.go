package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The upgrade relay. A WebSocket (or any upgraded) session is held by
// many clients at once and is mostly idle, so it is relayed without
// httputil.ReverseProxy: the handler dials the backend, writes the
// request and reads the answer itself, and on 101 hijacks the client and
// returns. Two small goroutines, one per direction, then carry the
// session. Each waits for its source to become readable through the
// runtime poller (syscall.RawConn) and takes a buffer from a pool only
// for the read and the write that follows, so an idle session holds two
// parked goroutines and its two connections, no buffer.

const (
	// upgradeBufSize is the pooled buffer of one read and write.
	upgradeBufSize = 16 << 10
	// upgradeSmallBuf is the buffer a direction keeps when its source
	// cannot be waited on without reading (TLS: the Edge decrypts).
	upgradeSmallBuf = 2 << 10
	// upgradeMaxHeader bounds the backend's answer head, as the
	// transport's MaxResponseHeaderBytes.
	upgradeMaxHeader = 1 << 20
)

var (
	upgradeBufs    = sync.Pool{New: func() any { return new([upgradeBufSize]byte) }}
	upgradeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 2<<10) }}
	upgradeWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 2<<10) }}
)

// upgradeSession is one upgraded session, registered in its target's
// sessions before the backend is dialled.
type upgradeSession struct {
	t    *target
	id   uint64
	left atomic.Int32 // directions still relaying

	mu      sync.Mutex
	cancel  context.CancelFunc // the handshake's; nil once relaying
	stopped bool
	client  net.Conn // the accepted connection (under TLS, if any)
	backend net.Conn
}

// newUpgradeSession makes a session and the context of its handshake,
// which stop cancels.
func newUpgradeSession(parent context.Context) (*upgradeSession, context.Context) {
	ctx, cancel := context.WithCancel(parent)
	return &upgradeSession{cancel: cancel}, ctx
}

// stop ends the session. A handshake in progress is cancelled. A
// relaying session is hung up on: the client gets a FIN at once (one
// shutdown syscall), and both directions are woken a moment later by
// the reaper, then close both connections (see pipe). stop waits for
// nothing and leaves the closing to the relays so that a switch ending
// thousands of sessions (sessionSet.closeAll, one stop after the other)
// tells every client first: net.Conn.Close waits until the goroutine
// parked in a read of that connection has woken and let go of it, and
// each woken relay's closes would run before the sweep went on.
func (s *upgradeSession) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	cancel, c := s.cancel, s.client
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if c != nil {
		hangUp(c)
		reap(s)
	}
}

func (s *upgradeSession) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// hangUp sends c's peer a FIN, without closing c nor waking its reader
// (a connection that is not a socket waits for the reaper's wake).
func hangUp(c net.Conn) {
	if rc := rawConnOf(c); rc != nil {
		rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	}
}

// aLongTimeAgo is a deadline that has passed: setting it wakes the
// connection's reads and writes without a syscall.
var aLongTimeAgo = time.Unix(1, 0)

// wake makes both directions of a stopped session return.
func (s *upgradeSession) wake() {
	s.mu.Lock()
	c, b := s.client, s.backend
	s.mu.Unlock()
	c.SetDeadline(aLongTimeAgo)
	b.SetDeadline(aLongTimeAgo)
}

// The reaper wakes stopped sessions once no session has been stopped for
// reapQuiet, that is after the sweep that stopped them: woken during it,
// with one P (the Edge may run with GOMAXPROCS=1), their relays would
// take turns with the sweep and the last clients would hear of a switch
// only after every close of every session before them. It runs only
// while there are sessions to wake.
const reapQuiet = 10 * time.Millisecond

var reaper struct {
	mu      sync.Mutex
	list    []*upgradeSession
	running bool
}

func reap(s *upgradeSession) {
	reaper.mu.Lock()
	reaper.list = append(reaper.list, s)
	start := !reaper.running
	reaper.running = true
	reaper.mu.Unlock()
	if start {
		go runReaper()
	}
}

func runReaper() {
	for {
		for n := -1; ; {
			reaper.mu.Lock()
			m := len(reaper.list)
			reaper.mu.Unlock()
			if m == n {
				break
			}
			n = m
			time.Sleep(reapQuiet)
		}
		reaper.mu.Lock()
		list := reaper.list
		reaper.list = nil
		if len(list) == 0 {
			reaper.running = false
			reaper.mu.Unlock()
			return
		}
		reaper.mu.Unlock()
		for _, s := range list {
			s.wake()
		}
	}
}

// closeConns closes both connections once neither direction uses them,
// so that no Close waits: the client's releases its listener slot, the
// backend's leaves the target's tracked connections.
func (s *upgradeSession) closeConns() {
	s.mu.Lock()
	c, b := s.client, s.backend
	s.mu.Unlock()
	c.Close()
	b.Close()
}

// attach hands the session its connections; false (and both closed) if
// it was stopped meanwhile.
func (s *upgradeSession) attach(client, backend net.Conn) bool {
	s.mu.Lock()
	cancel, stopped := s.cancel, s.stopped
	s.cancel = nil
	if !stopped {
		s.client, s.backend = client, backend
	}
	s.mu.Unlock()
	cancel()
	if stopped {
		client.Close()
		backend.Close()
	}
	return !stopped
}

// end is the session's bookkeeping once nothing of it runs any more.
func (s *upgradeSession) end() {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.t.sessGauge.Dec()
	s.t.sessions.remove(s.id)
}

// relayUpgrade relays an upgrade request of a registered session to its
// target. It returns once the session is handed to its two directions
// (the last of them ends the session) or once it failed (ended here).
func (e *Edge) relayUpgrade(ctx context.Context, w http.ResponseWriter, r *http.Request, s *upgradeSession) {
	t := s.t
	relaying := false
	defer func() {
		if !relaying {
			s.end()
		}
	}()
	// proxyError's view: a request whose context is the session's, so a
	// session stopped by a switch or a client gone gets no answer (499).
	rc := r.WithContext(ctx)

	out := r.Clone(ctx)
	upType := upgradeType(r.Header)
	removeHopByHop(out.Header)
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = []string{upType}
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		delete(out.Header, h)
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // Write adds none
	}
	t.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	if out.ContentLength == 0 {
		out.Body = nil
	}
	out.Close = false

	conn, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		t.proxyError(w, rc, err)
		return
	}
	// Until the session is relaying, a cancelled context (client gone,
	// switch) aborts the handshake by closing the backend connection.
	unwatch := context.AfterFunc(ctx, func() { conn.Close() })
	bw := upgradeWriters.Get().(*bufio.Writer)
	bw.Reset(conn)
	br := upgradeReaders.Get().(*bufio.Reader)
	lim := &io.LimitedReader{R: conn, N: upgradeMaxHeader}
	br.Reset(lim)
	defer func() {
		bw.Reset(nil)
		upgradeWriters.Put(bw)
		br.Reset(nil)
		upgradeReaders.Put(br)
	}()

	conn.SetDeadline(time.Now().Add(e.opts.ResponseHeaderTimeout))
	resp, err := upgradeExchange(out, bw, br)
	if err != nil {
		unwatch()
		conn.Close()
		t.proxyError(w, rc, err)
		return
	}
	lim.N = math.MaxInt64
	conn.SetDeadline(time.Time{})
	if !unwatch() {
		conn.Close()
		t.proxyError(w, rc, ctx.Err())
		return
	}

	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Answered as any request is: the client learns why not.
		t.count(resp.StatusCode)
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		relayResponse(w, resp)
		stop()
		conn.Close()
		return
	}
	if got := upgradeType(resp.Header); !strings.EqualFold(got, upType) {
		conn.Close()
		t.proxyError(w, rc, fmt.Errorf("backend switched to protocol %q when %q was requested", got, upType))
		return
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		conn.Close()
		t.proxyError(w, rc, fmt.Errorf("switch protocols: %w", err))
		return
	}
	t.count(http.StatusSwitchingProtocols)

	// The 101 head, then whatever the backend sent after it, go to the
	// client first; what the client sent after its request goes to the
	// backend first. Both are copied out of the buffers, which go back
	// to their pools.
	var head bytes.Buffer
	head.Grow(256 + br.Buffered())
	head.WriteString("HTTP/1.1 ")
	head.WriteString(resp.Status)
	head.WriteString("\r\n")
	resp.Header.Write(&head)
	head.WriteString("\r\n")
	if n := br.Buffered(); n > 0 {
		p, _ := br.Peek(n)
		head.Write(p)
	}
	var early []byte
	if n := cbuf.Reader.Buffered(); n > 0 {
		p, _ := cbuf.Reader.Peek(n)
		early = bytes.Clone(p)
	}
	if rc, ok := client.(*replayConn); ok { // from the fast path
		early = append(early, rc.rest()...)
	}

	if !s.attach(closeTarget(client), conn) {
		return
	}
	relaying = true
	s.left.Store(2)
	go s.pipe(client, conn, head.Bytes())
	go s.pipe(conn, client, early)
}

// upgradeExchange writes the request and reads the backend's answer,
// skipping informational answers other than 101.
func upgradeExchange(out *http.Request, bw *bufio.Writer, br *bufio.Reader) (*http.Response, error) {
	if err := out.Write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	for range 8 {
		resp, err := http.ReadResponse(br, out)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			return nil, fmt.Errorf("malformed status %q", resp.Status)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
	return nil, errors.New("too many informational answers")
}

// relayResponse relays a backend's final answer to the client.
func relayResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	buf := upgradeBufs.Get().(*[upgradeBufSize]byte)
	io.CopyBuffer(w, onlyReader{resp.Body}, buf[:])
	upgradeBufs.Put(buf)
}

// onlyReader hides a reader's WriterTo, so that CopyBuffer uses the
// pooled buffer.
type onlyReader struct{ io.Reader }

// pipe relays one direction until its source ends: at EOF it half-closes
// the destination and lets the other direction finish; on an error (or
// woken by stop) it stops the session and wakes the other direction. The
// last direction to end closes both connections and ends the session.
func (s *upgradeSession) pipe(dst, src net.Conn, first []byte) {
	err := relayConn(dst, src, first)
	if err == nil && !s.isStopped() {
		err = closeWrite(dst)
	}
	if err != nil {
		s.stop()
		s.wake() // the other direction, now
	}
	if s.left.Add(-1) == 0 {
		s.closeConns()
		s.end()
	}
}

// relayConn writes first, then copies src to dst until EOF (nil) or an
// error.
func relayConn(dst, src net.Conn, first []byte) error {
	if len(first) > 0 {
		if _, err := dst.Write(first); err != nil {
			return err
		}
	}
	if rc := rawConnOf(src); rc != nil {
		return rawCopy(dst, rc)
	}
	buf := make([]byte, upgradeSmallBuf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rawCopy copies from a socket without holding a buffer while it waits:
// the read is tried when the poller says the socket is readable, with a
// pooled buffer that goes back at once if there was nothing to read.
func rawCopy(dst net.Conn, src syscall.RawConn) error {
	var (
		buf  *[upgradeBufSize]byte
		n    int
		rerr error
	)
	read := func(fd uintptr) bool {
		buf = upgradeBufs.Get().(*[upgradeBufSize]byte)
		for {
			n, rerr = syscall.Read(int(fd), buf[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			upgradeBufs.Put(buf)
			buf = nil
			return false // wait in the poller
		}
		return true
	}
	for {
		err := src.Read(read)
		if err == nil && rerr != nil {
			err = rerr
		}
		if err != nil || n <= 0 {
			if buf != nil {
				upgradeBufs.Put(buf)
				buf = nil
			}
			return err // nil at EOF
		}
		_, err = dst.Write(buf[:n])
		upgradeBufs.Put(buf)
		buf = nil
		if err != nil {
			return err
		}
	}
}

// netConn is the connection a wrapper of the package wraps, to reach the
// socket; the wrappers' own Close is left as it is.
func (c *limitConn) netConn() net.Conn   { return c.Conn }
func (c *trackedConn) netConn() net.Conn { return c.Conn }

type wrapsConn interface{ netConn() net.Conn }

// rawConnOf is the socket under c, nil when c is not one that the poller
// can wait on without a read (TLS).
func rawConnOf(c net.Conn) syscall.RawConn {
	for {
		w, ok := c.(wrapsConn)
		if !ok {
			break
		}
		c = w.netConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// closeTarget is the connection of the client that a session hangs up
// on and closes: the one under TLS, so that closing sends no alert
// (which could wait on a slow client) and still releases the listener
// slot.
func closeTarget(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// closeWrite half-closes c: TLS with its close alert, TCP with a FIN.
func closeWrite(c net.Conn) error {
	for {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		w, ok := c.(wrapsConn)
		if !ok {
			return errors.New("cannot half-close")
		}
		c = w.netConn()
	}
}

// upgradeType is the protocol an upgrade asks for or answers with, ""
// when the header is not an upgrade.
func upgradeType(h http.Header) string {
	if !hasToken(h["Connection"], "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// hopByHop are the headers of one connection only (RFC 9110 7.6.1), as
// ReverseProxy removes them.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for f != "" {
			var name string
			name, f, _ = strings.Cut(f, ",")
			if name = textprotoKey(name); name != "" {
				delete(h, name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

func textprotoKey(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return http.CanonicalHeaderKey(s)
}
