package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The plain-HTTP fast path. net/http's server and ReverseProxy cost a
// request several goroutine hand-offs (the transport's read and write
// loops, the server's background read) and twice the syscalls; under load
// that put the Edge at 0.64x HAProxy's requests/s. front serves the common
// HTTP/1.1 request itself in one goroutine per client connection: it
// reads the head, picks the route's target, writes the head (hop-by-hop
// headers dropped, X-Forwarded-* set) and the body, verbatim, to a pooled
// backend connection, and relays the answer the same way. Bodies are
// framed (Content-Length, chunked, or until the backend closes) but never
// decoded.
//
// Anything else goes to net/http unchanged, through handoff: upgrades,
// Expect, HTTP/1.0, absolute or escaped targets, odd framing, and every
// malformed head (net/http knows the exact 400 for each). Under TLS the
// whole entry point is net/http's (HTTP/2 included).

// maxRespHead bounds a backend's answer head, as MaxResponseHeaderBytes did.
const maxRespHead = 1 << 20

// front is the Edge's plaintext HTTP entry point.
type front struct {
	e       *Edge
	ln      net.Listener
	handoff *chanListener // to net/http

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // connection goroutines
}

func newFront(e *Edge, ln net.Listener) *front {
	return &front{e: e, ln: ln, conns: map[net.Conn]struct{}{},
		handoff: &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: ln.Addr()}}
}

// serve accepts client connections until the listener is closed.
func (f *front) serve() {
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, say: wait a little, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.e.log.Warn("edge accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-f.handoff.done:
				return
			}
			continue
		}
		backoff = 0
		if !f.track(c) {
			c.Close()
			continue
		}
		go f.serveConn(c)
	}
}

func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *front) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	f.wg.Done()
}

// close stops accepting and closes every client connection it serves;
// wait then waits for their goroutines.
func (f *front) close() {
	f.ln.Close()
	f.handoff.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

func (f *front) wait() { f.wg.Wait() }

// chanListener hands connections the front does not serve to net/http.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// give hands c to net/http; false once closed.
func (l *chanListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// replayConn is a client connection handed to net/http: it reads first
// what the front already read of it, then drops those buffers, so that a
// long session (a WebSocket) does not keep them.
type replayConn struct {
	net.Conn
	pre     *bytes.Reader
	br      *bufio.Reader
	drained atomic.Bool // set by Read; read by any goroutine
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.pre != nil {
		if c.pre.Len() > 0 {
			return c.pre.Read(p)
		}
		c.pre = nil
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
		c.drained.Store(true)
	}
	return c.Conn.Read(p)
}

// rest takes what is left to replay, without blocking, once net/http
// let go of the connection (a hijack): the session sends it on itself,
// then reads the socket.
func (c *replayConn) rest() []byte {
	var b []byte
	if c.pre != nil {
		b, _ = io.ReadAll(c.pre)
		c.pre = nil
	}
	if c.br != nil {
		p, _ := c.br.Peek(c.br.Buffered())
		b = append(b, p...)
		c.br = nil
	}
	c.drained.Store(true)
	return b
}

// netConn lets an upgraded session read the socket itself (see
// rawConnOf), but only once nothing read ahead is left here to replay:
// until then it is nil and the session reads through Read.
func (c *replayConn) netConn() net.Conn {
	if !c.drained.Load() {
		return nil
	}
	return c.Conn
}

func (c *replayConn) CloseWrite() error { return closeWrite(c.Conn) }

// clientConn is one client connection served by the front.
type clientConn struct {
	f    *front
	e    *Edge
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	head []byte // the request head being read
	resp []byte // the backend's answer head being read
	xff  []byte // "X-Forwarded-For: IP\r\n"
	req  reqHead
}

func (f *front) serveConn(c net.Conn) {
	defer f.untrack(c)
	cc := &clientConn{f: f, e: f.e, c: c,
		br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		cc.xff = append(append([]byte("X-Forwarded-For: "), ip...), "\r\n"...)
	}
	if handed := cc.loop(); !handed {
		c.Close()
	}
}

// loop serves requests until the connection ends (false) or is handed to
// net/http (true).
func (cc *clientConn) loop() bool {
	o := &cc.e.opts
	for {
		if cc.br.Buffered() == 0 {
			cc.c.SetReadDeadline(time.Now().Add(o.IdleTimeout))
			if _, err := cc.br.Peek(1); err != nil {
				return false
			}
		}
		cc.c.SetReadDeadline(time.Now().Add(o.ReadHeaderTimeout))
		err := cc.readHead()
		if err != nil && !errors.Is(err, errHeadTooBig) {
			return false // timeout or the client left mid-head
		}
		if err != nil || !cc.req.parse(cc.head) {
			return cc.handoff()
		}
		cc.c.SetReadDeadline(time.Time{})
		if !cc.serve() {
			return false
		}
	}
}

var errHeadTooBig = errors.New("head too big")

// readHead reads the request head into cc.head, up to MaxHeaderBytes.
func (cc *clientConn) readHead() error {
	var err error
	cc.head, err = readHead(cc.br, cc.head[:0], cc.e.opts.MaxHeaderBytes)
	return err
}

// readHead appends to buf the lines of a head, up to and including its
// empty line; errHeadTooBig past max bytes.
func readHead(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		buf = append(buf, line...) // kept whole: a hand-off replays it
		if len(buf) > max {
			return buf, errHeadTooBig
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return buf, err
		}
		// A line ends here; an empty one ends the head (a leading empty
		// line is for the parser to refuse).
		if n := len(buf); len(buf) > 2 && (buf[n-2] == '\n' || (buf[n-2] == '\r' && buf[n-3] == '\n')) {
			return buf, nil
		}
	}
}

// handoff gives the connection, with what was read of it, to net/http.
func (cc *clientConn) handoff() bool {
	rc := &replayConn{Conn: cc.c, pre: bytes.NewReader(bytes.Clone(cc.head)), br: cc.br}
	cc.c.SetReadDeadline(time.Time{})
	if cc.bw.Flush() != nil || !cc.f.handoff.give(rc) {
		return false
	}
	return true
}

// serve answers one parsed request; false ends the connection.
func (cc *clientConn) serve() bool {
	e, q := cc.e, &cc.req
	rt := e.match(q.host, q.path)
	if rt == nil {
		e.m.notFound.Inc()
		return cc.answer(404, textPlain, noRouteBody, q.hasBody())
	}
	t := rt.cur.Load()
	if t == nil {
		rt.unavailable.Inc()
		return cc.answer(503, "", e.page, q.hasBody())
	}
	return cc.relay(t)
}

var noRouteBody = []byte("no route for this host and path\n")

const textPlain = "text/plain; charset=utf-8"

// answer writes the Edge's own answer: the maintenance page when ctype is
// "". A request body left unread closes the connection after it.
func (cc *clientConn) answer(code int, ctype string, body []byte, unread bool) bool {
	closing := cc.req.close || unread
	w := cc.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(code))
	w.WriteByte(' ')
	w.WriteString(http.StatusText(code))
	if ctype == "" {
		w.WriteString("\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nRetry-After: ")
		w.WriteString(cc.e.retryAfter[0])
	} else {
		w.WriteString("\r\nContent-Type: ")
		w.WriteString(ctype)
	}
	w.WriteString("\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	if closing {
		w.WriteString("\r\nConnection: close")
	}
	w.WriteString("\r\n\r\n")
	if !cc.req.head {
		w.Write(body)
	}
	return w.Flush() == nil && !closing
}

// relay sends the request to t's backend and its answer to the client.
// A request that could not connect, or met a pooled connection the
// backend had closed, is sent again when that is safe (replayable): the
// former to the other side if usable, as RoundTrip does for net/http.
func (cc *clientConn) relay(t *target) bool {
	e, q := cc.e, &cc.req
	retried := false
	for attempt := 0; ; attempt++ {
		bc, reused, err := t.pool.get(t, attempt > 0)
		if err != nil {
			if o := t.other; !retried && q.replayable() && o.usable.Load() && e.ctx.Err() == nil {
				retried = true
				e.m.retries.WithLabelValues(t.r.name).Inc()
				t = o
				continue
			}
			t.failed(503, "edge backend unreachable", err)
			return cc.answer(503, "", e.page, true)
		}
		cc.resp = cc.resp[:0]
		err = cc.send(bc)
		if ce := (*clientError)(nil); errors.As(err, &ce) {
			bc.c.Close()
			if errors.Is(err, errBadChunk) {
				return cc.answer(400, textPlain, badBodyText, true)
			}
			return false // the client left while sending its body
		}
		unread := err != nil
		if err == nil {
			bc.c.SetReadDeadline(time.Now().Add(e.opts.ResponseHeaderTimeout))
			cc.resp, err = readHead(bc.br, cc.resp, maxRespHead)
		}
		if err != nil {
			bc.c.Close()
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			unanswered := len(cc.resp) == 0 && !timeout
			switch {
			case reused && unanswered && q.replayable() && attempt < 2:
				continue // a pooled connection the backend had closed
			case unanswered && q.replayable() && !retried && t.other.usable.Load():
				retried = true // the backend died under the request
				e.m.retries.WithLabelValues(t.r.name).Inc()
				t = t.other
				continue
			case unanswered:
				// Closed or reset before a byte of answer: the backend is
				// going away (a crash, a failover), so users get the
				// maintenance page and its Retry-After, not a bare 502.
				t.failed(503, "edge backend closed without answering", err)
				return cc.answer(503, "", e.page, unread)
			case timeout:
				t.failed(504, "edge backend timeout", err)
				return cc.answer(504, textPlain, timeoutBody, unread)
			default:
				t.failed(502, "edge backend error", err)
				return cc.answer(502, textPlain, badGatewayBody, unread)
			}
		}
		return cc.respond(t, bc)
	}
}

var (
	timeoutBody    = []byte("the server behind the edge did not answer in time\n")
	badGatewayBody = []byte("the server behind the edge failed to answer\n")
	badBodyText    = []byte("malformed chunked request body\n")
	errBadAnswer   = errors.New("malformed answer head")
)

// clientError is a failure of the client while its body is relayed: it
// left, or sent a malformed body.
type clientError struct{ err error }

func (c *clientError) Error() string { return "client: " + c.err.Error() }
func (c *clientError) Unwrap() error { return c.err }

// send writes the request head and body to the backend.
func (cc *clientConn) send(bc *backConn) error {
	q, w := &cc.req, bc.bw
	w.Write(cc.head[:q.lineEnd])
	for _, h := range q.keep {
		w.Write(cc.head[h.start:h.end])
	}
	w.Write(cc.xff)
	w.WriteString("X-Forwarded-Host: ")
	w.Write(q.hostRaw)
	w.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	var err error
	switch {
	case q.chunked:
		err = copyChunked(w, cc.br)
	case q.length > 0:
		err = copyN(w, cc.br, q.length)
	}
	switch {
	case err == nil:
		return w.Flush()
	case errors.Is(err, errWrite):
		return err
	}
	return &clientError{err}
}

// respond relays the backend's answer (its head is in cc.resp) and
// returns bc to the pool when it can serve again.
func (cc *clientConn) respond(t *target, bc *backConn) bool {
	var r respHead
	for {
		if !r.parse(cc.resp) {
			bc.c.Close()
			t.failed(502, "edge backend error", errBadAnswer)
			return cc.answer(502, textPlain, badGatewayBody, false)
		}
		if r.code >= 200 || r.code == 101 {
			break
		}
		// 1xx (103 Early Hints, say): pass it on, the answer follows.
		cc.writeRespHead(&r, false)
		if cc.bw.Flush() != nil {
			bc.c.Close()
			return false
		}
		var err error
		if cc.resp, err = readHead(bc.br, cc.resp[:0], maxRespHead); err != nil {
			bc.c.Close()
			t.count(502)
			return false
		}
	}
	bc.c.SetReadDeadline(time.Time{})
	if r.code == 101 { // not asked for: upgrades go through net/http
		bc.c.Close()
		t.count(502)
		return cc.answer(502, textPlain, badGatewayBody, false)
	}
	q := &cc.req
	noBody := q.head || r.code == 204 || r.code == 304
	untilEOF := !noBody && !r.chunked && r.length < 0
	closing := q.close || untilEOF
	cc.writeRespHead(&r, closing)
	var err error
	switch {
	case noBody:
	case r.chunked:
		err = copyChunked(cc.bw, bc.br)
	case r.length >= 0:
		err = copyN(cc.bw, bc.br, r.length)
	default:
		err = copyN(cc.bw, bc.br, -1)
	}
	if err == nil {
		err = cc.bw.Flush()
	}
	t.count(r.code)
	if err != nil || untilEOF || r.close || bc.br.Buffered() > 0 {
		bc.c.Close()
	} else {
		t.pool.put(t, bc)
	}
	return err == nil && !closing
}

// writeRespHead writes the answer's head to the client, as HTTP/1.1,
// without its hop-by-hop headers.
func (cc *clientConn) writeRespHead(r *respHead, closing bool) {
	w := cc.bw
	w.WriteString("HTTP/1.1")
	w.Write(cc.resp[len("HTTP/1.x"):r.lineEnd])
	for _, h := range r.keep {
		w.Write(cc.resp[h.start:h.end])
	}
	if closing {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// span is a header line, CRLF included, within a head.
type span struct{ start, end int }

// reqHead is a parsed request head; its slices point into the head.
type reqHead struct {
	lineEnd    int // end of the request line, CRLF included
	host       string
	hostRaw    []byte
	path       string
	length     int64 // -1: none
	chunked    bool
	close      bool
	head       bool // method HEAD
	idempotent bool
	keep       []span // header lines passed on
}

func (q *reqHead) hasBody() bool { return q.chunked || q.length > 0 }

// replayable: safe to send again, as net/http's Transport judges it.
func (q *reqHead) replayable() bool { return q.idempotent && !q.hasBody() }

// parse reads a request head the fast path serves; false for anything
// else (net/http then answers it).
func (q *reqHead) parse(b []byte) bool {
	*q = reqHead{keep: q.keep[:0], length: -1}
	line, next, ok := cutLine(b, 0)
	if !ok {
		return false
	}
	q.lineEnd = next
	method, rest, ok1 := bytes.Cut(line, sp)
	target, version, ok2 := bytes.Cut(rest, sp)
	if !ok1 || !ok2 || !isToken(method) || string(version) != "HTTP/1.1" ||
		len(target) == 0 || target[0] != '/' || !isTarget(target) {
		return false
	}
	switch string(method) {
	case "GET", "OPTIONS", "TRACE", "PUT", "DELETE":
		q.idempotent = true
	case "HEAD":
		q.idempotent, q.head = true, true
	case "CONNECT", "PRI":
		return false
	}
	path := target
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	q.path = string(path)
	hosts, tes := 0, 0
	ok = headerLines(b, next, func(line span, name, value []byte) bool {
		drop := false
		switch {
		case eq(name, "Host"):
			hosts++
			q.hostRaw = value
		case eq(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (q.length >= 0 && n != q.length) {
				return false
			}
			q.length = n
		case eq(name, "Transfer-Encoding"):
			tes++
			if !eq(value, "chunked") {
				return false
			}
			q.chunked = true
		case eq(name, "Connection"):
			drop = true
			for v := value; len(v) > 0; {
				var tok []byte
				tok, v, _ = bytes.Cut(v, comma)
				tok = bytes.Trim(tok, " \t")
				switch {
				case eq(tok, "close"):
					q.close = true
				case eq(tok, "keep-alive"), len(tok) == 0:
				default:
					return false // upgrade, or headers to drop by name
				}
			}
		case eq(name, "Upgrade"), eq(name, "Expect"):
			return false
		case eq(name, "Keep-Alive"), eq(name, "Proxy-Connection"), eq(name, "Proxy-Authorization"),
			eq(name, "X-Forwarded-For"), eq(name, "X-Forwarded-Host"), eq(name, "X-Forwarded-Proto"):
			drop = true
		case eq(name, "TE"):
			drop = !eq(value, "trailers")
		}
		if !drop {
			q.keep = append(q.keep, line)
		}
		return true
	})
	if !ok || hosts != 1 || tes > 1 || (q.chunked && q.length >= 0) {
		return false
	}
	q.host = string(q.hostRaw)
	return true
}

// respHead is a parsed answer head; its spans point into the head.
type respHead struct {
	lineEnd int
	code    int
	length  int64 // -1: none
	chunked bool
	close   bool // the backend will not serve another request on it
	keep    []span
}

func (r *respHead) parse(b []byte) bool {
	*r = respHead{keep: r.keep[:0], length: -1}
	line, next, ok := cutLine(b, 0)
	if !ok || len(line) < len("HTTP/1.x 200") || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		(line[7] != '0' && line[7] != '1') || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return false
	}
	r.close = line[7] == '0'
	code := line[9:12]
	for _, c := range code {
		if c < '0' || c > '9' {
			return false
		}
	}
	r.code = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if r.code < 100 {
		return false
	}
	r.lineEnd = next
	lengthAt := -1
	ok = headerLines(b, next, func(line span, name, value []byte) bool {
		switch {
		case eq(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (r.length >= 0 && n != r.length) {
				return false
			}
			if r.length >= 0 {
				return true // the same length twice: pass one on
			}
			r.length, lengthAt = n, len(r.keep)
		case eq(name, "Transfer-Encoding"):
			// The last coding frames the body; only chunked is known.
			last := value
			if i := bytes.LastIndexByte(value, ','); i >= 0 {
				last = bytes.Trim(value[i+1:], " \t")
			}
			r.chunked = eq(last, "chunked")
			r.close = r.close || !r.chunked
		case eq(name, "Connection"):
			r.close = r.close || containsToken(value, "close")
			return true
		case eq(name, "Keep-Alive"), eq(name, "Proxy-Connection"), eq(name, "Upgrade"):
			return true
		}
		r.keep = append(r.keep, line)
		return true
	})
	if r.chunked && lengthAt >= 0 {
		// Transfer-Encoding wins (RFC 9112 6.3); the length is not passed on.
		r.keep = append(r.keep[:lengthAt], r.keep[lengthAt+1:]...)
		r.length = -1
	}
	return ok
}

var (
	sp    = []byte(" ")
	colon = []byte(":")
	comma = []byte(",")
)

// headerLines gives fn each header line of the head b from next on (its
// span, name and trimmed value) up to the empty line that must end b;
// false on a malformed line or when fn refuses one.
func headerLines(b []byte, next int, fn func(line span, name, value []byte) bool) bool {
	for {
		start := next
		line, n, ok := cutLine(b, next)
		if !ok {
			return false
		}
		next = n
		if len(line) == 0 {
			return next == len(b)
		}
		name, value, ok := bytes.Cut(line, colon)
		if !ok || !isToken(name) || !isValue(value) || !fn(span{start, next}, name, bytes.Trim(value, " \t")) {
			return false
		}
	}
}

// cutLine returns the line of b at i without its CRLF, and where the
// next one starts; false when it does not end in CRLF.
func cutLine(b []byte, i int) (line []byte, next int, ok bool) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 1 || b[i+j-1] != '\r' {
		return nil, 0, false
	}
	return b[i : i+j-1], i + j + 1, true
}

func eq(b []byte, s string) bool { return len(b) == len(s) && bytes.EqualFold(b, []byte(s)) }

func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, comma)
		if eq(bytes.Trim(t, " \t"), tok) {
			return true
		}
	}
	return false
}

// isToken: RFC 9110 token characters.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isValue: no control characters but HTAB.
func isValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isTarget: a printable origin-form target without escapes, which route
// matching would have to decode (net/http does).
func isTarget(b []byte) bool {
	for _, c := range b {
		if c <= 0x20 || c >= 0x7f || c == '%' || c == '#' {
			return false
		}
	}
	return true
}

func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// errWrite marks a failure to write to the destination of a copy, as
// opposed to the source failing or sending a malformed body.
var errWrite = errors.New("write failed")

// copyN copies n bytes (until EOF when n < 0) from src to dst, verbatim.
// dst is flushed whenever src has nothing buffered, so that a stream (SSE,
// a long poll) reaches the client as it comes, while a small body leaves
// in one write with its head.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n != 0 {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return errors.Join(errWrite, err)
			}
			if _, err := src.Peek(1); err != nil {
				if n < 0 && err == io.EOF {
					return nil
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := src.Buffered()
		if n >= 0 && int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return errors.Join(errWrite, err)
		}
		src.Discard(k)
		if n > 0 {
			n -= int64(k)
		}
	}
	return nil
}

// maxTrailers bounds the trailer section of a chunked body.
const maxTrailers = 64 << 10

// copyChunked copies a chunked body from src to dst verbatim, trailers
// included, checking its framing as it goes.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return chunkErr(err)
		}
		size, ok := chunkSize(line)
		if !ok {
			return errBadChunk
		}
		if _, err := dst.Write(line); err != nil {
			return errors.Join(errWrite, err)
		}
		if size == 0 {
			break
		}
		if err := copyN(dst, src, size); err != nil {
			return err
		}
		crlf, err := src.Peek(2)
		if err != nil {
			return chunkErr(err)
		}
		if crlf[0] != '\r' || crlf[1] != '\n' {
			return errBadChunk
		}
		dst.Write(crlf)
		src.Discard(2)
	}
	for total := 0; ; {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return chunkErr(err)
		}
		if total += len(line); total > maxTrailers || len(line) < 2 || line[len(line)-2] != '\r' {
			return errBadChunk
		}
		if _, err := dst.Write(line); err != nil {
			return errors.Join(errWrite, err)
		}
		if len(line) == 2 {
			return nil
		}
	}
}

var errBadChunk = errors.New("malformed chunked body")

func chunkErr(err error) error {
	switch err {
	case io.EOF:
		return io.ErrUnexpectedEOF
	case bufio.ErrBufferFull:
		return errBadChunk
	}
	return err
}

// chunkSize parses a chunk-size line: hex digits, then optional
// extensions, then CRLF.
func chunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	body := line[:len(line)-2]
	var n int64
	i := 0
	for ; i < len(body); i++ {
		d, ok := unhex(body[i])
		if !ok {
			break
		}
		if i == 15 {
			return 0, false // past 2^60: nobody sends that
		}
		n = n<<4 | int64(d)
	}
	rest := body[i:]
	if i == 0 || (len(rest) > 0 && rest[0] != ';' && rest[0] != ' ' && rest[0] != '\t') {
		return 0, false
	}
	return n, isValue(rest)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// backConn is a connection to a backend, kept between requests.
type backConn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time // when it went back to the pool
}

// backPool keeps a target's idle backend connections, newest first used.
type backPool struct {
	mu   sync.Mutex
	idle []*backConn
}

const (
	maxIdlePerTarget = 1024
	backendIdle      = 90 * time.Second
)

// get returns an idle connection (reused) or dials a new one; fresh skips
// the pool.
func (p *backPool) get(t *target, fresh bool) (bc *backConn, reused bool, err error) {
	if !fresh {
		now := time.Now()
		p.mu.Lock()
		for len(p.idle) > 0 {
			bc = p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if now.Sub(bc.idle) < backendIdle {
				p.mu.Unlock()
				return bc, true, nil
			}
			bc.c.Close()
		}
		p.mu.Unlock()
	}
	c, err := t.dial(t.e.ctx, "tcp", t.addr) // the dialer bounds it: DialTimeout
	if err != nil {
		return nil, false, err
	}
	return &backConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

func (p *backPool) put(t *target, bc *backConn) {
	bc.idle = time.Now()
	p.mu.Lock()
	// After Close's sweep (the context is cancelled first), nothing is kept.
	if len(p.idle) < maxIdlePerTarget && t.e.ctx.Err() == nil {
		p.idle = append(p.idle, bc)
		bc = nil
	}
	p.mu.Unlock()
	if bc != nil {
		bc.c.Close()
	}
}

// closeIdle closes the idle connections (a switch: no new request will
// use them; Close).
func (p *backPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}
