package mds

import (
	"slices"
	"sort"
	"sync"
	"time"
)

// store holds the bindings, keyed by canonical AOR. A mutex rather than an
// owning goroutine: every operation is a short map update, and handle must
// stay a plain synchronous call so that the fuzzer can drive it.
type store struct {
	mu        sync.Mutex
	aors      map[string][]entry
	total     int
	maxPerAOR int
	maxTotal  int
}

// entry is a binding with the key its contact is compared by.
type entry struct {
	key string
	Binding
}

func newStore(maxPerAOR, maxTotal int) *store {
	return &store{aors: map[string][]entry{}, maxPerAOR: maxPerAOR, maxTotal: maxTotal}
}

// update is one Contact of a REGISTER, already validated.
type update struct {
	key     string
	contact string
	expires time.Duration // 0 removes
}

// registration is what a REGISTER asks of the store.
type registration struct {
	aor       string
	wildcard  bool // Contact: * with Expires: 0
	updates   []update
	callID    string
	cseq      uint32
	node      string
	userAgent string
	source    string
	transport string
}

// applyResult says how a registration ended.
type applyResult int

const (
	applyOK applyResult = iota
	applyOutOfOrder
	applyTooManyForAOR
	applyFull
)

// apply performs RFC 3261 section 10.3 steps 7 and 8 for one AOR,
// atomically: either every update is committed or none. It returns the
// AOR's bindings afterwards and whether anything changed.
func (s *store) apply(reg registration, now time.Time) (current []entry, changed bool, res applyResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Lapsed bindings do not count against the limits, whether or not the
	// expiry timer has run yet.
	if s.expireLocked(now) != nil {
		changed = true
	}
	cur := s.aors[reg.aor]
	next := slices.Clone(cur)

	if reg.wildcard {
		for _, e := range cur {
			// Same Call-ID: only a later CSeq may remove (RFC 3261 10.3
			// step 6); a different Call-ID always may.
			if e.CallID == reg.callID && reg.cseq <= e.CSeq {
				return cur, changed, applyOutOfOrder
			}
		}
		next = nil
	}
	for _, u := range reg.updates {
		i := slices.IndexFunc(next, func(e entry) bool { return e.key == u.key })
		if i >= 0 && next[i].CallID == reg.callID {
			if reg.cseq < next[i].CSeq {
				return cur, changed, applyOutOfOrder
			}
			if reg.cseq == next[i].CSeq {
				// The same request again: a UDP retransmission whose
				// response was lost (we keep no transaction state), or
				// the same contact twice in one request. Leave it.
				continue
			}
		}
		switch {
		case u.expires == 0 && i >= 0:
			next = slices.Delete(next, i, i+1)
		case u.expires == 0:
			// Removing an unknown contact is a no-op.
		default:
			e := entry{key: u.key, Binding: Binding{
				AOR:       reg.aor,
				Contact:   u.contact,
				Node:      reg.node,
				UserAgent: reg.userAgent,
				Source:    reg.source,
				Transport: reg.transport,
				Since:     now,
				Expires:   now.Add(u.expires),
				CallID:    reg.callID,
				CSeq:      reg.cseq,
			}}
			if i >= 0 {
				if next[i].Node == e.Node {
					e.Since = next[i].Since
				}
				next[i] = e
			} else {
				next = append(next, e)
			}
		}
	}
	if len(next) > s.maxPerAOR {
		return cur, changed, applyTooManyForAOR
	}
	if s.total-len(cur)+len(next) > s.maxTotal {
		return cur, changed, applyFull
	}
	if !slices.Equal(cur, next) {
		changed = true
	}
	s.total += len(next) - len(cur)
	if len(next) == 0 {
		delete(s.aors, reg.aor)
	} else {
		s.aors[reg.aor] = next
	}
	return next, changed, applyOK
}

// query returns the live bindings of one AOR.
func (s *store) query(aor string, now time.Time) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []entry
	for _, e := range s.aors[aor] {
		if e.Expires.After(now) {
			out = append(out, e)
		}
	}
	return out
}

// expire removes lapsed bindings and returns them.
func (s *store) expire(now time.Time) []Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(now)
}

func (s *store) expireLocked(now time.Time) []Binding {
	var removed []Binding
	for aor, es := range s.aors {
		kept := es[:0:0]
		for _, e := range es {
			if e.Expires.After(now) {
				kept = append(kept, e)
			} else {
				removed = append(removed, e.Binding)
			}
		}
		if len(kept) == len(es) {
			continue
		}
		s.total -= len(es) - len(kept)
		if len(kept) == 0 {
			delete(s.aors, aor)
		} else {
			s.aors[aor] = kept
		}
	}
	return removed
}

// nextExpiry is the earliest expiry of any binding.
func (s *store) nextExpiry() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, es := range s.aors {
		for _, e := range es {
			if next.IsZero() || e.Expires.Before(next) {
				next = e.Expires
			}
		}
	}
	return next, !next.IsZero()
}

// list returns every live binding, sorted by AOR, then Since, then
// contact.
func (s *store) list(now time.Time) []Binding {
	s.mu.Lock()
	var out []Binding
	for _, es := range s.aors {
		for _, e := range es {
			if e.Expires.After(now) {
				out = append(out, e.Binding)
			}
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.AOR != b.AOR {
			return a.AOR < b.AOR
		}
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.Contact < b.Contact
	})
	return out
}
