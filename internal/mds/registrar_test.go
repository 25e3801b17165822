package mds

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestRegistrar_Register(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport string
		md5Only   bool // sipgo answers the first challenge; strip SHA-256 to make it use MD5
	}{
		{name: "SHA-256 over UDP", transport: "udp"},
		{name: "MD5 over UDP", transport: "udp", md5Only: true},
		{name: "SHA-256 over TCP", transport: "tcp"},
		{name: "MD5 over TCP", transport: "tcp", md5Only: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs *logBuffer
			r, changes := startRegistrar(t, func(o *Options) { logs = capture(t, o) })
			c := newSIPClient(t, r, mainHost, "xivo-main", tc.transport)
			c.md5Only = tc.md5Only
			before := time.Now()
			res, chal := c.register(c.contact(), 120)
			if chal == nil {
				t.Fatal("REGISTER without credentials was not challenged")
			}
			checkChallenge(t, chal, false)
			if res.StatusCode != sip.StatusOK {
				t.Fatalf("got %d %s, want 200", res.StatusCode, res.Reason)
			}
			if got := contactsOf(res); len(got) != 1 || got[0] != "<sip:xivo@"+mainHost+":5070>;expires=120" {
				t.Errorf("200 lists contacts %q, want the one bound with expires=120", got)
			}
			if res.GetHeader("Date") == nil {
				t.Error("200 has no Date header")
			}
			if got := res.To().Params.GetOr("tag", ""); got == "" {
				t.Error("200 has no To tag")
			}
			bs := r.Bindings()
			if len(bs) != 1 {
				t.Fatalf("Bindings() = %+v, want one", bs)
			}
			b := bs[0]
			if host, _, _ := net.SplitHostPort(r.UDPAddr()); b.AOR != "sip:xivo@"+host {
				t.Errorf("AOR = %q", b.AOR)
			}
			wantTransport := strings.ToUpper(tc.transport)
			if b.Contact != "sip:xivo@"+mainHost+":5070" || b.Node != "xivo-main" || b.UserAgent != "resilience/xivo-main" ||
				b.Transport != wantTransport || !strings.HasPrefix(b.Source, mainHost+":") || b.CallID != c.callID || b.CSeq != c.cseq {
				t.Errorf("binding = %+v", b)
			}
			if d := b.Expires.Sub(before); d < 119*time.Second || d > 121*time.Second {
				t.Errorf("expires in %v, want 120s", d)
			}
			wantAlg := map[bool]string{false: "SHA-256", true: "MD5"}[tc.md5Only]
			if !regexp.MustCompile(`msg=authenticated .*user=xivo algorithm=` + wantAlg + ` `).MatchString(logs.String()) {
				t.Errorf("the registrar did not log an authentication with %s", wantAlg)
			}
			waitFor(t, time.Second, "OnChange", func() bool { return changes.Load() >= 1 })
		})
	}
}

func TestRegistrar_DigestAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		offered []string
		answer  string
		want    int
	}{
		{[]string{"MD5"}, "MD5", 200},
		{[]string{"MD5"}, "SHA-256", 401},
		{[]string{"SHA-256"}, "SHA-256", 200},
		{[]string{"SHA-256"}, "MD5", 401},
		{[]string{"SHA-256"}, "", 401}, // no algorithm= is MD5
	} {
		t.Run(strings.Join(tc.offered, ",")+" answered with "+tc.answer, func(t *testing.T) {
			r, _ := startRegistrar(t, func(o *Options) { o.DigestAlgorithms = tc.offered })
			c := dialRaw(t, r, "UDP")
			m := c.base(r)
			res := c.exchange(m.String())
			hs := res.GetHeaders("WWW-Authenticate")
			if len(hs) != len(tc.offered) || param(hs[0].Value(), "algorithm") != tc.offered[0] {
				t.Fatalf("challenges %v, want one per %v", hs, tc.offered)
			}
			// Answer with the wanted algorithm whatever was offered.
			chal := strings.Replace(hs[0].Value(), "algorithm="+tc.offered[0], "algorithm="+tc.answer, 1)
			m.cseq++
			m.auth = authorization(chal, testUser, testPass, "REGISTER", m.ruri)
			if tc.answer == "" {
				m.auth = strings.Replace(m.auth, ", algorithm=,", ",", 1)
			}
			if res := c.exchange(m.String()); res.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.want)
			}
		})
	}
}

// checkChallenge checks a 401: two WWW-Authenticate, SHA-256 first, MD5
// second, same fresh nonce, qop auth.
func checkChallenge(t *testing.T, res *sip.Response, stale bool) {
	t.Helper()
	if res.StatusCode != sip.StatusUnauthorized {
		t.Fatalf("got %d, want 401", res.StatusCode)
	}
	hs := res.GetHeaders("WWW-Authenticate")
	if len(hs) != 2 {
		t.Fatalf("got %d WWW-Authenticate headers, want 2", len(hs))
	}
	for i, alg := range []string{"SHA-256", "MD5"} {
		v := hs[i].Value()
		if param(v, "algorithm") != alg || param(v, "qop") != "auth" || param(v, "realm") != "mds-1" || param(v, "nonce") == "" {
			t.Errorf("challenge %d = %q, want algorithm=%s qop=auth realm=mds-1 and a nonce", i, v, alg)
		}
		if got := param(v, "stale") == "true"; got != stale {
			t.Errorf("challenge %d = %q: stale=%v, want %v", i, v, got, stale)
		}
	}
}

func TestRegistrar_ChallengeAlgorithms(t *testing.T) {
	// The raw exchange shows what the server accepts for each algorithm,
	// independently of what sipgo's client picks.
	for _, alg := range []string{"SHA-256", "MD5"} {
		for _, transport := range []string{"UDP", "TCP"} {
			t.Run(alg+" "+transport, func(t *testing.T) {
				r, _ := startRegistrar(t, nil)
				c := dialRaw(t, r, transport)
				m := c.base(r)
				res := c.exchange(m.String())
				checkChallenge(t, res, false)
				for _, h := range res.GetHeaders("WWW-Authenticate") {
					if param(h.Value(), "algorithm") == alg {
						m.cseq++
						m.auth = authorization(h.Value(), testUser, testPass, "REGISTER", m.ruri)
					}
				}
				if res := c.exchange(m.String()); res.StatusCode != sip.StatusOK {
					t.Fatalf("got %d %s, want 200", res.StatusCode, res.Reason)
				}
				if bs := r.Bindings(); len(bs) != 1 || bs[0].Transport != transport {
					t.Fatalf("Bindings() = %+v", bs)
				}
			})
		}
	}
}

func TestRegistrar_WrongCredentials(t *testing.T) {
	r, changes := startRegistrar(t, nil)
	for _, tc := range []struct {
		name, user, pass string
		want             int
	}{
		{"wrong password", testUser, "guess", sip.StatusForbidden},
		{"unknown user", "mallory", "guess", sip.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSIPClient(t, r, mainHost, "xivo-main", "udp")
			c.user, c.pass = tc.user, tc.pass
			res, chal := c.register(c.contact(), 120)
			if chal == nil || res.StatusCode != tc.want {
				t.Fatalf("got %d %s (challenged: %v), want %d", res.StatusCode, res.Reason, chal != nil, tc.want)
			}
		})
	}
	t.Run("another user's AOR", func(t *testing.T) {
		// The right password of "other", for the AOR of xivo.
		if res := rawAuthAs(t, r, "other", "pw2"); res.StatusCode != sip.StatusForbidden {
			t.Fatalf("got %d %s, want 403", res.StatusCode, res.Reason)
		}
	})
	t.Run("wrong realm is challenged again", func(t *testing.T) {
		c := dialRaw(t, r, "UDP")
		m := c.base(r)
		chal := c.exchange(m.String()).GetHeader("WWW-Authenticate").Value()
		m.auth = strings.Replace(authorization(chal, testUser, testPass, "REGISTER", m.ruri), `realm="mds-1"`, `realm="elsewhere"`, 1)
		m.cseq++
		checkChallenge(t, c.exchange(m.String()), false)
	})
	t.Run("uri of another request", func(t *testing.T) {
		c := dialRaw(t, r, "UDP")
		m := c.base(r)
		chal := c.exchange(m.String()).GetHeader("WWW-Authenticate").Value()
		m.auth = authorization(chal, testUser, testPass, "REGISTER", "sip:somewhere.else")
		m.cseq++
		if res := c.exchange(m.String()); res.StatusCode != sip.StatusBadRequest {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
	if bs := r.Bindings(); len(bs) != 0 {
		t.Fatalf("bound with wrong credentials: %+v", bs)
	}
	if n := changes.Load(); n != 0 {
		t.Fatalf("OnChange called %d times", n)
	}
}

// rawAuthAs registers testUser's AOR with the credentials of user.
func rawAuthAs(t *testing.T, r *Registrar, user, pass string) *sip.Response {
	t.Helper()
	c := dialRaw(t, r, "UDP")
	m := c.base(r)
	res := c.exchange(m.String())
	m.cseq++
	m.auth = authorization(res.GetHeader("WWW-Authenticate").Value(), user, pass, "REGISTER", m.ruri)
	return c.exchange(m.String())
}

func TestRegistrar_StaleNonce(t *testing.T) {
	r, _ := startRegistrar(t, nil, func(r *Registrar) { r.auth.ttl = 200 * time.Millisecond })
	c := dialRaw(t, r, "UDP")
	m := c.base(r)
	chal := c.exchange(m.String()).GetHeader("WWW-Authenticate").Value()
	time.Sleep(300 * time.Millisecond)
	m.cseq++
	m.auth = authorization(chal, testUser, testPass, "REGISTER", m.ruri)
	checkChallenge(t, c.exchange(m.String()), true)

	t.Run("nonce of a previous run", func(t *testing.T) {
		other, _ := startRegistrar(t, nil)
		oc := dialRaw(t, other, "UDP")
		foreign := oc.exchange(oc.base(other).String()).GetHeader("WWW-Authenticate").Value()
		m.cseq++
		m.auth = authorization(foreign, testUser, testPass, "REGISTER", m.ruri)
		checkChallenge(t, c.exchange(m.String()), true)
	})
	t.Run("wrong password on a stale nonce", func(t *testing.T) {
		m.cseq++
		m.auth = authorization(chal, testUser, "guess", "REGISTER", m.ruri)
		checkChallenge(t, c.exchange(m.String()), false)
	})
	if bs := r.Bindings(); len(bs) != 0 {
		t.Fatalf("bound on a stale nonce: %+v", bs)
	}
}

func TestRegistrar_Expires(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	c := newSIPClient(t, r, mainHost, "xivo-main", "udp")
	t.Run("below MinExpires: 423", func(t *testing.T) {
		res, _ := c.register(c.contact(), 30)
		if res.StatusCode != sip.StatusIntervalToBrief || res.Reason != "Interval Too Brief" {
			t.Fatalf("got %d %s, want 423 Interval Too Brief", res.StatusCode, res.Reason)
		}
		if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
			t.Fatalf("Min-Expires = %v, want 60", h)
		}
		if bs := r.Bindings(); len(bs) != 0 {
			t.Fatalf("bound below MinExpires: %+v", bs)
		}
	})
	t.Run("above MaxExpires: clamped", func(t *testing.T) {
		res := c.mustRegister(99999)
		if got := contactsOf(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=3600") {
			t.Fatalf("contacts %q, want expires=3600", got)
		}
	})
	t.Run("contact parameter wins over header", func(t *testing.T) {
		res, _ := c.register(c.contact()+";expires=90", 600)
		if got := contactsOf(res); res.StatusCode != 200 || len(got) != 1 || !strings.HasSuffix(got[0], ";expires=90") {
			t.Fatalf("got %d, contacts %q, want expires=90", res.StatusCode, got)
		}
	})
	t.Run("no Expires: default", func(t *testing.T) {
		res := c.mustRegister(-1)
		if got := contactsOf(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=300") {
			t.Fatalf("contacts %q, want expires=300", got)
		}
	})
	t.Run("malformed Expires: 3600 (RFC 3261 20.19)", func(t *testing.T) {
		res, _ := c.register(c.contact()+";expires=soon", -1)
		if got := contactsOf(res); len(got) != 1 || !strings.HasSuffix(got[0], ";expires=3600") {
			t.Fatalf("contacts %q, want expires=3600", got)
		}
	})
}

func TestRegistrar_Refresh(t *testing.T) {
	r, changes := startRegistrar(t, nil)
	c := newSIPClient(t, r, mainHost, "xivo-main", "udp")
	c.mustRegister(60)
	first := r.Bindings()[0]
	waitFor(t, time.Second, "OnChange after bind", func() bool { return changes.Load() >= 1 })
	n := changes.Load()
	time.Sleep(20 * time.Millisecond)
	c.mustRegister(600)
	bs := r.Bindings()
	if len(bs) != 1 {
		t.Fatalf("Bindings() = %+v, want one", bs)
	}
	if !bs[0].Expires.After(first.Expires.Add(500*time.Second)) || !bs[0].Since.Equal(first.Since) || bs[0].CSeq <= first.CSeq {
		t.Fatalf("after refresh %+v, before %+v: want a later expiry, the same Since, a higher CSeq", bs[0], first)
	}
	waitFor(t, time.Second, "OnChange after refresh", func() bool { return changes.Load() > n })

	t.Run("query without Contact lists and changes nothing", func(t *testing.T) {
		res, _ := c.register("", -1)
		if got := contactsOf(res); res.StatusCode != 200 || len(got) != 1 {
			t.Fatalf("got %d, contacts %q", res.StatusCode, got)
		}
		if after := r.Bindings(); !after[0].Expires.Equal(bs[0].Expires) {
			t.Fatal("a query changed the binding")
		}
	})
}

func TestRegistrar_Unregister(t *testing.T) {
	r, changes := startRegistrar(t, nil)
	c := newSIPClient(t, r, mainHost, "xivo-main", "tcp")
	c.mustRegister(120)
	waitFor(t, time.Second, "OnChange after bind", func() bool { return changes.Load() >= 1 })
	n := changes.Load()
	res := c.mustRegister(0)
	if got := contactsOf(res); len(got) != 0 {
		t.Fatalf("200 to Expires: 0 lists %q", got)
	}
	if bs := r.Bindings(); len(bs) != 0 {
		t.Fatalf("still bound: %+v", bs)
	}
	waitFor(t, time.Second, "OnChange after unbind", func() bool { return changes.Load() > n })
}

func TestRegistrar_Wildcard(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	a := newSIPClient(t, r, mainHost, "xivo-main", "udp")
	b := newSIPClient(t, r, standbyHost, "xivo-standby", "udp")
	a.mustRegister(120)
	b.mustRegister(120)
	if n := len(r.Bindings()); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	t.Run("with a non-zero Expires: 400", func(t *testing.T) {
		res, _ := a.register("*", 60)
		if res.StatusCode != sip.StatusBadRequest {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
	t.Run("with another contact: 400", func(t *testing.T) {
		res, _ := a.register("*, "+a.contact(), 0)
		if res.StatusCode != sip.StatusBadRequest {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
	if n := len(r.Bindings()); n != 2 {
		t.Fatalf("%d bindings after bad wildcards, want 2", n)
	}
	res, _ := a.register("*", 0)
	if res.StatusCode != sip.StatusOK || len(contactsOf(res)) != 0 {
		t.Fatalf("got %d with contacts %q, want 200 and none", res.StatusCode, contactsOf(res))
	}
	if bs := r.Bindings(); len(bs) != 0 {
		t.Fatalf("Contact: * left %+v", bs)
	}
}

func TestRegistrar_ExpiresByItself(t *testing.T) {
	r, changes := startRegistrar(t, func(o *Options) {
		o.MinExpires, o.DefaultExpires = time.Second, time.Second
	})
	c := newSIPClient(t, r, mainHost, "xivo-main", "udp")
	c.mustRegister(1)
	waitFor(t, time.Second, "OnChange after bind", func() bool { return changes.Load() >= 1 })
	n := changes.Load()
	start := time.Now()
	waitFor(t, 3*time.Second, "the binding to expire", func() bool { return len(r.Bindings()) == 0 })
	// The timer, not only the read-side filter, removed it: OnChange
	// fires and the store is empty.
	waitFor(t, 2*time.Second, "OnChange after expiry", func() bool { return changes.Load() > n })
	if _, ok := r.store.nextExpiry(); ok {
		t.Fatal("expired binding still stored")
	}
	t.Logf("expired %v after the check started", time.Since(start).Round(time.Millisecond))
}

func TestRegistrar_Alarm(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	main := newSIPClient(t, r, mainHost, "xivo-main", "udp")
	standby := newSIPClient(t, r, standbyHost, "xivo-standby", "tcp")
	main.mustRegister(120)
	if a := r.Alarm(); a != "" {
		t.Fatalf("alarm with one node: %q", a)
	}
	standby.mustRegister(120)
	if a, want := r.Alarm(), "two XiVO nodes bound at once: xivo-main and xivo-standby"; a != want {
		t.Fatalf("Alarm() = %q, want %q", a, want)
	}
	nodes := map[string]string{}
	for _, b := range r.Bindings() {
		nodes[b.Node] = b.Transport
	}
	if nodes["xivo-main"] != "UDP" || nodes["xivo-standby"] != "TCP" {
		t.Fatalf("nodes of the bindings: %v", nodes)
	}
	main.mustRegister(0)
	if a := r.Alarm(); a != "" {
		t.Fatalf("alarm after the main unregistered: %q", a)
	}
	if bs := r.Bindings(); len(bs) != 1 || bs[0].Node != "xivo-standby" {
		t.Fatalf("Bindings() = %+v, want the standby's", bs)
	}
}

func TestRegistrar_NodeHeader(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	t.Run("absent", func(t *testing.T) {
		c := newSIPClient(t, r, mainHost, "", "udp")
		c.mustRegister(120)
		if bs := r.Bindings(); len(bs) != 1 || bs[0].Node != "" {
			t.Fatalf("Bindings() = %+v, want Node empty", bs)
		}
		c.mustRegister(0)
	})
	t.Run("not a node name: 400", func(t *testing.T) {
		c := dialRaw(t, r, "UDP")
		m := c.base(r)
		m.node = "<script>"
		if res := c.authed(m, testPass); res.StatusCode != sip.StatusBadRequest {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
	})
}

func TestRegistrar_CSeqOrder(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	c := dialRaw(t, r, "UDP")
	m := c.base(r)
	m.cseq = 10
	if res := c.authed(m, testPass); res.StatusCode != 200 {
		t.Fatalf("got %d, want 200", res.StatusCode)
	}
	bound := r.Bindings()[0] // CSeq 11
	chal := c.exchange(m.String()).GetHeader("WWW-Authenticate").Value()
	send := func(cseq int, callID, expires string) *sip.Response {
		m := m
		m.cseq, m.callID, m.expires = cseq, callID, expires
		m.auth = authorization(chal, testUser, testPass, "REGISTER", m.ruri)
		return c.exchange(m.String())
	}
	t.Run("older CSeq, same Call-ID: refused, unchanged", func(t *testing.T) {
		if res := send(5, m.callID, "0"); res.StatusCode != sip.StatusBadRequest {
			t.Fatalf("got %d, want 400", res.StatusCode)
		}
		if bs := r.Bindings(); len(bs) != 1 || bs[0] != bound {
			t.Fatalf("binding changed: %+v", bs)
		}
	})
	t.Run("same CSeq, same Call-ID: a retransmission, unchanged", func(t *testing.T) {
		if res := send(11, m.callID, "600"); res.StatusCode != 200 {
			t.Fatalf("got %d, want 200", res.StatusCode)
		}
		if bs := r.Bindings(); len(bs) != 1 || bs[0] != bound {
			t.Fatalf("binding changed: %+v", bs)
		}
	})
	t.Run("lower CSeq, new Call-ID: a restarted client, updated", func(t *testing.T) {
		if res := send(1, "restarted", "600"); res.StatusCode != 200 {
			t.Fatalf("got %d, want 200", res.StatusCode)
		}
		if bs := r.Bindings(); len(bs) != 1 || bs[0].CallID != "restarted" || !bs[0].Expires.After(bound.Expires) {
			t.Fatalf("binding not updated: %+v", bs)
		}
	})
}

func TestRegistrar_Limits(t *testing.T) {
	r, _ := startRegistrar(t, func(o *Options) { o.MaxBindingsPerAOR, o.MaxBindings = 2, 3 })
	c := dialRaw(t, r, "UDP")
	contact := func(i int) string { return fmt.Sprintf("<sip:xivo@%s:%d>", mainHost, 6000+i) }
	m := c.base(r)
	m.contacts = []string{contact(1), contact(2), contact(3)}
	if res := c.authed(m, testPass); res.StatusCode != sip.StatusForbidden {
		t.Fatalf("3 contacts in one request: got %d, want 403", res.StatusCode)
	}
	m.contacts = []string{contact(1), contact(2)}
	if res := c.authed(m, testPass); res.StatusCode != 200 {
		t.Fatalf("2 contacts: got %d, want 200", res.StatusCode)
	}
	m.callID += "-2"
	m.contacts = []string{contact(3)}
	if res := c.authed(m, testPass); res.StatusCode != sip.StatusForbidden {
		t.Fatalf("a third contact for the AOR: got %d, want 403", res.StatusCode)
	}
	// Another AOR (host part differs): the total of 3 is reached at 4.
	m.host = "mds.example"
	m.contacts = []string{contact(4), contact(5)}
	if res := c.authed(m, testPass); res.StatusCode != sip.StatusServiceUnavailable || res.GetHeader("Retry-After") == nil {
		t.Fatalf("over the total: got %d, want 503 with Retry-After", res.StatusCode)
	}
	if n := len(r.Bindings()); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
}

func TestRegistrar_OtherMethods(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	c := dialRaw(t, r, "UDP")
	for _, tc := range []struct {
		method string
		want   int
	}{
		{"OPTIONS", 200},
		{"INVITE", sip.StatusMethodNotAllowed},
		{"SUBSCRIBE", sip.StatusMethodNotAllowed},
		{"CANCEL", sip.StatusCallTransactionDoesNotExists},
	} {
		t.Run(tc.method, func(t *testing.T) {
			m := c.base(r)
			m.method = tc.method
			res := c.exchange(m.String())
			if res.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", res.StatusCode, tc.want)
			}
			if tc.want != sip.StatusCallTransactionDoesNotExists {
				if h := res.GetHeader("Allow"); h == nil || h.Value() != allowed {
					t.Fatalf("Allow = %v, want %q", h, allowed)
				}
			}
		})
	}
	t.Run("ACK is not answered", func(t *testing.T) {
		m := c.base(r)
		m.method = "ACK"
		c.send([]byte(m.String()))
		if res := c.recv(200 * time.Millisecond); res != nil {
			t.Fatalf("ACK answered with %d", res.StatusCode)
		}
	})
	t.Run("Require: 420", func(t *testing.T) {
		m := c.base(r)
		m.extra = []string{"Require: gruu"}
		res := c.exchange(m.String())
		if h := res.GetHeader("Unsupported"); res.StatusCode != sip.StatusBadExtension || h == nil || h.Value() != "gruu" {
			t.Fatalf("got %d (Unsupported %v), want 420 with Unsupported: gruu", res.StatusCode, h)
		}
	})
}

func TestRegistrar_Lifecycle(t *testing.T) {
	t.Run("port taken", func(t *testing.T) {
		r, _ := startRegistrar(t, nil)
		for _, o := range []Options{{UDP: r.UDPAddr()}, {TCP: r.TCPAddr()}, {UDP: mdsHost + ":0", TCP: r.TCPAddr()}} {
			o.Name, o.Users = "mds-2", map[string]string{"u": "p"}
			r2, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if err := r2.Start(context.Background()); err == nil {
				t.Errorf("Start on a taken port (%+v) succeeded", o)
			}
			_ = r2.Close()
		}
	})
	t.Run("close twice, start after close", func(t *testing.T) {
		r, _ := startRegistrar(t, nil)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err == nil {
			t.Fatal("Start after Close succeeded")
		}
	})
	t.Run("close before start", func(t *testing.T) {
		r, err := New(Options{Name: "x", UDP: mdsHost + ":0", Users: map[string]string{"u": "p"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ctx ends it", func(t *testing.T) {
		r, err := New(Options{Name: "x", UDP: mdsHost + ":0", Users: map[string]string{"u": "p"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		addr := r.UDPAddr()
		cancel()
		waitFor(t, time.Second, "the port to be released", func() bool {
			c, err := net.ListenPacket("udp", addr)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		})
		_ = r.Close()
	})
	t.Run("bad options", func(t *testing.T) {
		users := map[string]string{"u": "p"}
		for _, o := range []Options{
			{Users: users},
			{Name: "x"},
			{Name: "x", Users: map[string]string{"u": ""}},
			{Name: "x", Users: users, MinExpires: 500 * time.Millisecond},
			{Name: "x", Users: users, MinExpires: 600 * time.Second},
			{Name: "x", Users: users, MaxBindingsPerAOR: 5, MaxBindings: 2},
			{Name: "x", Users: users, Realm: `a"b`},
		} {
			if _, err := New(o); err == nil {
				t.Errorf("New(%+v) succeeded", o)
			}
		}
	})
}

func TestRegistrar_TCPConnections(t *testing.T) {
	r, _ := startRegistrar(t, nil, func(r *Registrar) { r.tcpIdle = 300 * time.Millisecond })
	t.Run("unauthenticated connection closed", func(t *testing.T) {
		c := dialRaw(t, r, "TCP")
		c.exchange(c.base(r).String()) // a 401 does not authenticate it
		if !c.closed(2 * time.Second) {
			t.Fatal("idle unauthenticated connection still open")
		}
	})
	t.Run("authenticated connection kept", func(t *testing.T) {
		c := dialRaw(t, r, "TCP")
		if res := c.authed(c.base(r), testPass); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
		if c.closed(600 * time.Millisecond) {
			t.Fatal("authenticated connection closed")
		}
	})
	t.Run("keep-alive ping", func(t *testing.T) {
		c := dialRaw(t, r, "TCP")
		c.send([]byte("\r\n\r\n"))
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 8)
		n, err := c.conn.Read(buf)
		if err != nil || string(buf[:n]) != "\r\n" {
			t.Fatalf("pong = %q, %v; want CRLF", buf[:n], err)
		}
	})
	t.Run("connection cap", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for range maxTCPConns + 5 {
			c, err := net.Dial("tcp", r.TCPAddr())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		waitFor(t, 2*time.Second, "the cap", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.conns) == maxTCPConns
		})
		// The extra ones were closed by the server.
		_ = conns[len(conns)-1].SetReadDeadline(time.Now().Add(time.Second))
		if _, err := conns[len(conns)-1].Read(make([]byte, 1)); err == nil {
			t.Fatal("connection over the cap is open")
		}
	})
}

func TestRegistrar_SeveralUsers(t *testing.T) {
	r, _ := startRegistrar(t, nil)
	for _, u := range []struct{ user, pass, node string }{{testUser, testPass, "xivo-main"}, {"other", "pw2", "xivo-other"}} {
		c := dialRaw(t, r, "UDP")
		m := c.base(r)
		m.user, m.node = u.user, u.node
		m.contacts = []string{"<sip:" + u.user + "@" + mainHost + ":5070>"}
		if res := c.authed(m, u.pass); res.StatusCode != 200 || len(contactsOf(res)) != 1 {
			t.Fatalf("%s: got %d with contacts %q, want 200 listing its own contact only", u.user, res.StatusCode, contactsOf(res))
		}
	}
	bs := r.Bindings()
	if len(bs) != 2 || !strings.HasPrefix(bs[0].AOR, "sip:other@") || !strings.HasPrefix(bs[1].AOR, "sip:xivo@") {
		t.Fatalf("Bindings() = %+v, want other's then xivo's", bs)
	}
}
