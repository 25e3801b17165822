// Package feed hands a node's latest status, encoded once per change, to
// every reader: the status API reads the last one, each event stream
// subscribes. A reader too slow to keep up loses the oldest queued
// snapshots, never the newest, so it cannot hold the publisher back.
package feed

import (
	"sync"
	"sync/atomic"
)

// Buffer is how many snapshots a subscriber may have queued.
const Buffer = 32

// Feed is one status feed. The zero value is ready: Encoded returns nil
// until the first Publish.
type Feed struct {
	cur  atomic.Pointer[[]byte]
	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

// Publish makes b the current snapshot and queues it for every
// subscriber. b must not be changed afterwards.
func (f *Feed) Publish(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur.Store(&b)
	for ch := range f.subs {
		select {
		case ch <- b:
		default:
			select { // drop the oldest queued snapshot
			case <-ch:
			default:
			}
			select {
			case ch <- b:
			default:
			}
		}
	}
}

// Encoded returns the current snapshot.
func (f *Feed) Encoded() []byte {
	if p := f.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// Subscribe returns a channel that receives every snapshot from now on,
// starting with the current one; cancel releases it.
func (f *Feed) Subscribe() (events <-chan []byte, cancel func()) {
	ch := make(chan []byte, Buffer)
	f.mu.Lock()
	if b := f.Encoded(); b != nil {
		ch <- b
	}
	if f.subs == nil {
		f.subs = make(map[chan []byte]struct{})
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}
