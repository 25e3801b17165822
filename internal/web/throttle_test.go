package web

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottle_Lockout(t *testing.T) {
	clock := newFakeClock()
	th := newThrottle(5, 30*time.Second, 15*time.Minute, clock.Now)
	const addr = "127.0.0.1"

	for i := 1; i <= 4; i++ {
		if d := th.fail(addr); d != 0 {
			t.Fatalf("failure %d locked for %s", i, d)
		}
		if d := th.wait(addr); d != 0 {
			t.Fatalf("wait after failure %d: %s", i, d)
		}
	}
	if d := th.fail(addr); d != 30*time.Second {
		t.Fatalf("5th failure: lockout %s, want 30s", d)
	}
	if d := th.wait(addr); d != 30*time.Second {
		t.Fatalf("wait = %s", d)
	}
	if d := th.wait("127.0.0.9"); d != 0 {
		t.Fatalf("another address waits %s", d)
	}
	clock.Add(10 * time.Second)
	if d := th.wait(addr); d != 20*time.Second {
		t.Fatalf("wait 10s later = %s, want 20s", d)
	}

	t.Run("each further failure doubles the lockout, up to the maximum", func(t *testing.T) {
		want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute}
		for i, w := range want {
			clock.Add(th.wait(addr))
			if d := th.fail(addr); d != w {
				t.Fatalf("failure %d: lockout %s, want %s", 6+i, d, w)
			}
		}
	})
	t.Run("a success clears the address", func(t *testing.T) {
		th.succeed(addr)
		if d := th.wait(addr); d != 0 {
			t.Fatalf("wait after success = %s", d)
		}
		if d := th.fail(addr); d != 0 {
			t.Fatalf("first failure after success locked for %s", d)
		}
	})
	t.Run("an address quiet for an hour is forgotten", func(t *testing.T) {
		for range 3 {
			th.fail(addr)
		}
		clock.Add(time.Hour)
		if d := th.fail(addr); d != 0 {
			t.Fatalf("failure after an hour locked for %s", d)
		}
	})
}

func TestThrottle_Bounded(t *testing.T) {
	clock := newFakeClock()
	th := newThrottle(5, 30*time.Second, 15*time.Minute, clock.Now)
	for i := range maxTracked + 10 {
		th.fail(fmt.Sprintf("127.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	th.mu.Lock()
	n := len(th.byAddr)
	th.mu.Unlock()
	if n > maxTracked {
		t.Fatalf("%d addresses tracked, want at most %d", n, maxTracked)
	}
}

func TestAddrKey(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"IPv4", "127.0.0.1", "127.0.0.1"},
		{"IPv4-mapped IPv6", "::ffff:127.0.0.1", "127.0.0.1"},
		{"IPv6 by its /64", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"not an address", "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addrKey(tt.in); got != tt.want {
				t.Fatalf("addrKey(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
