package mds

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limits on input. A REGISTER from a real client is well under 2 KiB with
// about a dozen headers; these leave a wide margin and still bound what one
// message can cost.
const (
	// maxMessageSize bounds a UDP datagram and a framed TCP message.
	maxMessageSize = 16 << 10
	// maxHeaders bounds the header fields of a message (a Contact header
	// listing several contacts counts as several).
	maxHeaders = 64
	// maxFieldLen bounds every string a binding keeps: AOR, contact,
	// Call-ID, User-Agent (truncated rather than refused).
	maxFieldLen = 256
	// maxNodeLen bounds X-Resilience-Node, a node name from the config.
	maxNodeLen = 64
	// maxAuthHeaders bounds the Authorization headers looked at.
	maxAuthHeaders = 4
	// maxCommas bounds the commas in the headers of a datagram: values of
	// a list header are separated by them (see tooComplex).
	maxCommas = 4 * maxHeaders
)

const allowed = "REGISTER, OPTIONS"

// statusUnsupportedURIScheme is missing from sipgo's status constants.
const statusUnsupportedURIScheme = 416

// nodeHeader names the XiVO node a REGISTER comes from; internal/trunk
// sends it.
const nodeHeader = "X-Resilience-Node"

// httpDate is the format of the Date header (RFC 3261 section 20.17).
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

func newParser() *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = maxMessageSize
	return p
}

// handle is the whole request path for one message: parse, check, act,
// and render the response. It returns nil when nothing is to be sent
// (unparsable input, a response, an ACK). Sockets call it through
// safeHandle; the fuzzer calls it directly.
func (r *Registrar) handle(data []byte, src netip.AddrPort, transport string) []byte {
	if len(data) > maxMessageSize {
		return nil
	}
	if tooComplex(data) {
		r.log.Debug("drop message with too many header lines or values", "source", src.String(), "transport", transport)
		return nil
	}
	msg, err := r.parser.ParseSIP(data)
	if err != nil {
		r.log.Debug("drop unparsable message", "source", src.String(), "transport", transport, "error", err)
		return nil
	}
	out, _ := r.serve(msg, src, transport)
	return out
}

// tooComplex screens a datagram before sipgo parses it. Parsing costs
// about a microsecond per header value, so a 16 KiB datagram of 1500
// comma-separated contacts takes 2.5 ms and a flood of them would starve
// the one UDP reader; counting lines and commas is a hundred times
// cheaper. A TCP stream is framed by the parser itself and gets the
// maxHeaders check after parsing only; TCP cannot be spoofed and its
// connections are capped.
func tooComplex(data []byte) bool {
	head := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		head = data[:i]
	}
	return bytes.Count(head, []byte("\n")) > maxHeaders || bytes.Count(head, []byte(",")) > maxCommas
}

// serve answers one parsed message. authed reports a successful,
// authenticated REGISTER (TCP then keeps the connection open longer).
func (r *Registrar) serve(msg sip.Message, src netip.AddrPort, transport string) (out []byte, authed bool) {
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil, false // we send no requests, so expect no responses
	}
	req.SetSource(src.String())
	req.SetTransport(transport)
	res, authed := r.respond(req)
	if res == nil {
		return nil, authed
	}
	out = []byte(res.String())
	// A response echoes the request's Via, From, To, Call-ID and CSeq as
	// sipgo re-renders them, and sipgo's parser accepts some values its
	// renderer writes back in a form it then rejects (the fuzzer found
	// "From: :0:", rendered "<sip:0:>"). Nobody could match such a
	// response, so it is not sent.
	if _, err := r.parser.ParseSIP(out); err != nil {
		r.log.Debug("drop request: its response would not parse", "source", req.Source(), "error", err)
		return nil, authed
	}
	return out, authed
}

// respond validates a request (RFC 3261 section 8.2) and dispatches it.
func (r *Registrar) respond(req *sip.Request) (*sip.Response, bool) {
	if req.IsAck() {
		return nil, false // never answered
	}
	if !validVias(req) {
		// Without a Via nobody can match a response to a transaction, and
		// every Via is echoed: one we cannot write back sensibly makes a
		// response nobody can parse.
		r.log.Debug("drop request without a valid Via", "source", req.Source())
		return nil, false
	}
	if !validToken(string(req.Method)) {
		return r.reply(req, sip.StatusBadRequest, "Bad Method"), false
	}
	if len(req.Headers()) > maxHeaders {
		return r.reply(req, sip.StatusBadRequest, "Too Many Headers"), false
	}
	if req.SipVersion != "SIP/2.0" {
		return r.reply(req, sip.StatusVersionNotSupported, "Version Not Supported"), false
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		return r.reply(req, sip.StatusBadRequest, "Missing Mandatory Header"), false
	}
	if req.CSeq().MethodName != req.Method {
		return r.reply(req, sip.StatusBadRequest, "CSeq Method Mismatch"), false
	}
	if len(req.CallID().Value()) > maxFieldLen {
		return r.reply(req, sip.StatusBadRequest, "Call-ID Too Long"), false
	}
	switch req.Method {
	case sip.REGISTER:
		return r.register(req)
	case sip.OPTIONS:
		res := r.reply(req, sip.StatusOK, "OK")
		res.AppendHeader(sip.NewHeader("Allow", allowed))
		return res, false
	case sip.CANCEL:
		// Every REGISTER is answered at once, so there is never a pending
		// one to cancel (RFC 3261 section 9.2).
		return r.reply(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"), false
	default:
		res := r.reply(req, sip.StatusMethodNotAllowed, "Method Not Allowed")
		res.AppendHeader(sip.NewHeader("Allow", allowed))
		return res, false
	}
}

// register is RFC 3261 section 10.3.
func (r *Registrar) register(req *sip.Request) (*sip.Response, bool) {
	now := r.now()
	// Step 1: any sip or sips domain is ours; there is nothing to forward to.
	if s := req.Recipient.Scheme; s != "sip" && s != "sips" {
		return r.reply(req, statusUnsupportedURIScheme, "Unsupported URI Scheme"), false
	}
	// Step 2: we support no extension a client could require.
	if reqs := req.GetHeaders("Require"); len(reqs) > 0 {
		var vals []string
		for _, h := range reqs {
			vals = append(vals, h.Value())
		}
		res := r.reply(req, sip.StatusBadExtension, "Bad Extension")
		res.AppendHeader(sip.NewHeader("Unsupported", truncate(strings.Join(vals, ", "), maxFieldLen)))
		return res, false
	}
	// Step 3.
	user, res := r.authenticate(req, now)
	if res != nil {
		return res, false
	}
	// Steps 4 and 5: a user may only register its own address of record,
	// so one trunk user cannot take over another's bindings.
	to := req.To().Address
	if (to.Scheme != "sip" && to.Scheme != "sips") || to.Host == "" {
		return r.reply(req, statusUnsupportedURIScheme, "Unsupported URI Scheme"), false
	}
	if to.User != user {
		r.logRejected(now, "register refused: AOR of another user", req, "user", user, "aor", to.Addr())
		return r.reply(req, sip.StatusForbidden, "Forbidden"), false
	}
	aor := "sip:" + to.User + "@" + strings.ToLower(to.Host)
	if len(aor) > maxFieldLen {
		return r.reply(req, sip.StatusBadRequest, "AOR Too Long"), false
	}
	node := ""
	if h := req.GetHeader(nodeHeader); h != nil {
		node = h.Value()
		if !validNode(node) {
			return r.reply(req, sip.StatusBadRequest, "Bad "+nodeHeader), false
		}
	}
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = truncate(h.Value(), maxFieldLen)
	}

	reg := registration{
		aor:       aor,
		callID:    req.CallID().Value(),
		cseq:      req.CSeq().SeqNo,
		node:      node,
		userAgent: ua,
		source:    req.Source(),
		transport: req.Transport(),
	}
	headerExp, hasHeaderExp := r.headerExpires(req)
	// Step 6.
	var contacts []*sip.ContactHeader
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return r.reply(req, sip.StatusBadRequest, "Bad Contact"), false
		}
		contacts = append(contacts, c)
	}
	for _, c := range contacts {
		if !c.Address.Wildcard {
			continue
		}
		if len(contacts) != 1 || !hasHeaderExp || headerExp != 0 {
			return r.reply(req, sip.StatusBadRequest, "Invalid Wildcard Contact"), false
		}
		reg.wildcard = true
	}
	if len(contacts) > r.store.maxPerAOR {
		return r.reply(req, sip.StatusForbidden, "Too Many Contacts"), true
	}
	if !reg.wildcard {
		for _, c := range contacts {
			u, bad := r.contactUpdate(c, headerExp, hasHeaderExp)
			if bad != "" {
				return r.reply(req, sip.StatusBadRequest, bad), false
			}
			if u.expires != 0 && u.expires < r.minExp {
				res := r.reply(req, sip.StatusIntervalToBrief, "Interval Too Brief")
				res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(r.minExp/time.Second))))
				return res, true
			}
			reg.updates = append(reg.updates, u)
		}
	}

	// Steps 7 and 8. No Contact at all is a query.
	var current []entry
	if len(contacts) == 0 {
		current = r.store.query(aor, now)
	} else {
		var changed bool
		var result applyResult
		current, changed, result = r.store.apply(reg, now)
		if changed {
			// Also when the request fails: apply may have dropped lapsed
			// bindings on the way.
			r.changedBindings()
		}
		switch result {
		case applyOutOfOrder:
			// Kamailio's answer to the same case.
			return r.reply(req, sip.StatusBadRequest, "Invalid CSeq"), true
		case applyTooManyForAOR:
			return r.reply(req, sip.StatusForbidden, "Too Many Contacts"), true
		case applyFull:
			res := r.reply(req, sip.StatusServiceUnavailable, "Registrar Full")
			res.AppendHeader(sip.NewHeader("Retry-After", "60"))
			return res, true
		}
		if changed {
			r.log.Info("bindings changed", "aor", aor, "node", node, "source", reg.source,
				"transport", reg.transport, "contacts", len(current))
		}
	}
	res = r.reply(req, sip.StatusOK, "OK")
	for _, e := range current {
		left := (e.Expires.Sub(now) + time.Second - 1) / time.Second // round up: never 0
		res.AppendHeader(sip.NewHeader("Contact", "<"+e.Contact+">;expires="+strconv.FormatInt(int64(left), 10)))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(httpDate)))
	return res, true
}

// authenticate returns the authenticated username, or the response that
// refuses the request.
//
//   - no credentials for our realm, or malformed ones: 401, a challenge;
//   - right response, nonce stale or not ours (say, from before a
//     restart): 401 with stale=true, so the client retries at once;
//   - fresh nonce of ours, wrong response or unknown user: 403, since
//     retrying with the same password cannot help;
//   - wrong response and a nonce we cannot vouch for: 401.
func (r *Registrar) authenticate(req *sip.Request, now time.Time) (string, *sip.Response) {
	var cred credentials
	found := false
	for i, h := range req.GetHeaders("Authorization") {
		if i == maxAuthHeaders {
			break
		}
		c, err := parseCredentials(h.Value())
		if err == nil && c.realm == r.realm {
			cred, found = c, true
			break
		}
	}
	if !found || !cred.validForm() || !r.auth.offers(cred.algorithm) {
		return "", r.challenge(req, now, false)
	}
	// The digest covers the uri parameter, so it must name this request
	// (RFC 7616 section 3.4.6). Compare the parts that identify it; some
	// clients, sipgo among them, drop the URI parameters.
	var du sip.Uri
	if err := sip.ParseUri(cred.uri, &du); err != nil || !sameTarget(du, req.Recipient) {
		return "", r.reply(req, sip.StatusBadRequest, "Authorization URI Mismatch")
	}
	password, known := r.users[cred.username]
	if !known {
		password = "\x00" // spend the same time on an unknown user
	}
	ok := cred.matches(string(req.Method), password) && known
	ours, fresh := r.auth.checkNonce(cred.nonce, now)
	switch {
	case ok && ours && fresh:
		r.log.Debug("authenticated", "user", cred.username, "algorithm", orDefault(strings.ToUpper(cred.algorithm), "MD5"), "source", req.Source())
		return cred.username, nil
	case ok:
		return "", r.challenge(req, now, true)
	case ours && fresh:
		r.logRejected(now, "register refused: wrong credentials", req, "user", truncate(cred.username, maxFieldLen))
		return "", r.reply(req, sip.StatusForbidden, "Forbidden")
	default:
		return "", r.challenge(req, now, false)
	}
}

func (r *Registrar) challenge(req *sip.Request, now time.Time, stale bool) *sip.Response {
	res := r.reply(req, sip.StatusUnauthorized, "Unauthorized")
	for _, v := range r.auth.challenges(now, stale) {
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", v))
	}
	return res
}

// sameTarget compares two SIP URIs by scheme, user, host and port.
func sameTarget(a, b sip.Uri) bool {
	return a.Scheme == b.Scheme && a.User == b.User && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port
}

// headerExpires reads the Expires header. RFC 3261 section 20.19: a
// malformed value counts as 3600 seconds; one past 2^32-1 as that.
func (r *Registrar) headerExpires(req *sip.Request) (time.Duration, bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return 0, false
	}
	return parseExpires(h.Value()), true
}

func parseExpires(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 3600 * time.Second
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		n = 1<<32 - 1
	}
	return time.Duration(n) * time.Second
}

// contactUpdate turns one Contact into an update, or says why it is bad.
func (r *Registrar) contactUpdate(c *sip.ContactHeader, headerExp time.Duration, hasHeaderExp bool) (update, string) {
	a := c.Address
	if (a.Scheme != "sip" && a.Scheme != "sips") || a.Host == "" {
		return update{}, "Bad Contact"
	}
	// The contact kept and echoed is the URI without its headers part: a
	// registrar has no use for them and they could be long.
	a.Headers = nil
	contact := a.String()
	if len(contact) > maxFieldLen {
		return update{}, "Contact Too Long"
	}
	exp := r.defExp
	if hasHeaderExp {
		exp = headerExp
	}
	for _, kv := range c.Params {
		if strings.EqualFold(kv.K, "expires") {
			exp = parseExpires(kv.V)
		}
	}
	exp = min(exp, r.maxExp)
	return update{key: contactKey(a), contact: contact, expires: exp}, ""
}

// contactKey is what two contacts are compared by, a simplification of
// RFC 3261 section 19.1.4: scheme, user (case-sensitive), host (not), port,
// and the transport parameter.
func contactKey(a sip.Uri) string {
	k := a.Scheme + ":" + a.User + "@" + strings.ToLower(a.Host) + ":" + strconv.Itoa(a.Port)
	if t, ok := a.UriParams.Get("transport"); ok {
		k += ";transport=" + strings.ToLower(t)
	}
	return k
}

// validVias checks the Via headers: at least one, each SIP/2.0 over a
// named transport to a host.
func validVias(req *sip.Request) bool {
	vias := req.GetHeaders("Via")
	if len(vias) == 0 {
		return false
	}
	for _, h := range vias {
		v, ok := h.(*sip.ViaHeader)
		if !ok || !strings.EqualFold(v.ProtocolName, "SIP") || v.ProtocolVersion != "2.0" ||
			!validToken(v.Transport) || v.Host == "" || strings.ContainsAny(v.Host, " \t\r\n;,") {
			return false
		}
	}
	return true
}

// validToken is RFC 3261's token: what a method or a transport is.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// validNode accepts what a node name in the config can be.
func validNode(s string) bool {
	if s == "" || len(s) > maxNodeLen {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// reply builds a response to req with a To tag derived from the
// request, so that the response to a retransmission carries the same tag
// (RFC 3261 section 8.2.6.2) although we keep no transaction state.
func (r *Registrar) reply(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	// NewResponseFromRequest echoes the request's version; we speak 2.0
	// (and a 505 must say so).
	res.SipVersion = "SIP/2.0"
	if to := res.To(); to != nil && req.CallID() != nil && req.CSeq() != nil && !req.To().Params.Has("tag") {
		to.Params.Add("tag", r.toTag(req))
	}
	res.AppendHeader(sip.NewHeader("Server", "resilience/"+r.name))
	return res
}

func (r *Registrar) toTag(req *sip.Request) string {
	m := hmac.New(sha256.New, r.auth.key)
	m.Write([]byte("to-tag\x00"))
	m.Write([]byte(req.CallID().Value()))
	m.Write([]byte{0})
	m.Write([]byte(strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)))
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		m.Write([]byte{0})
		m.Write([]byte(b))
	}
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// logRejected logs a refused request at Warn, at most once a second, so
// that a password guesser cannot fill the disk.
func (r *Registrar) logRejected(now time.Time, msg string, req *sip.Request, args ...any) {
	ok, suppressed := r.warn.allow(now)
	if !ok {
		return
	}
	args = append(args, "source", req.Source(), "transport", req.Transport())
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	r.log.Warn(msg, args...)
}
