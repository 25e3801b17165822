package web

import (
	"net/netip"
	"sync"
	"time"
)

// throttle slows down password guessing per remote address: after
// `failures` failed logins in a row the address is locked out for `base`,
// and every further failure doubles the lockout up to `max`. A success
// clears the address; an address quiet for forgetAfter is forgotten.
type throttle struct {
	failures  int
	base, max time.Duration
	now       func() time.Time

	mu     sync.Mutex
	byAddr map[string]*attempts
}

type attempts struct {
	failures int
	last     time.Time
	until    time.Time
}

const (
	// forgetAfter is how long an address must stay quiet (and unlocked)
	// for its failures to be forgotten.
	forgetAfter = time.Hour
	// maxTracked bounds the addresses remembered; when full, quiet ones
	// are forgotten first, then the oldest.
	maxTracked = 10000
)

func newThrottle(failures int, base, max time.Duration, now func() time.Time) *throttle {
	return &throttle{failures: failures, base: base, max: max, now: now, byAddr: map[string]*attempts{}}
}

// addrKey groups addresses the way one client holds them: an IPv4 address
// alone, an IPv6 address by its /64.
func addrKey(host string) string {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// wait tells how long addr must wait before it may try again; 0 if it may.
func (t *throttle) wait(addr string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.byAddr[addr]
	if !ok {
		return 0
	}
	if t.stale(a, now) {
		delete(t.byAddr, addr)
		return 0
	}
	if now.Before(a.until) {
		return a.until.Sub(now)
	}
	return 0
}

// fail records a failed login and returns the lockout it starts (0 if
// none yet).
func (t *throttle) fail(addr string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.byAddr[addr]
	if ok && t.stale(a, now) {
		ok = false
	}
	if !ok {
		if len(t.byAddr) >= maxTracked {
			t.evictLocked(now)
		}
		a = &attempts{}
		t.byAddr[addr] = a
	}
	a.failures++
	a.last = now
	if a.failures < t.failures {
		return 0
	}
	d := t.base
	for i := t.failures; i < a.failures && d < t.max; i++ {
		d *= 2
	}
	d = min(d, t.max)
	a.until = now.Add(d)
	return d
}

// succeed clears addr after a good login.
func (t *throttle) succeed(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byAddr, addr)
}

func (t *throttle) stale(a *attempts, now time.Time) bool {
	return now.Sub(a.last) >= forgetAfter && !now.Before(a.until)
}

func (t *throttle) evictLocked(now time.Time) {
	for k, a := range t.byAddr {
		if t.stale(a, now) {
			delete(t.byAddr, k)
		}
	}
	for len(t.byAddr) >= maxTracked {
		var oldest string
		var at time.Time
		for k, a := range t.byAddr {
			if oldest == "" || a.last.Before(at) {
				oldest, at = k, a.last
			}
		}
		delete(t.byAddr, oldest)
	}
}
