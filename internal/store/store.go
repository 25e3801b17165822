// Package store keeps what a node must not forget across a crash: its
// desired status and epoch, and the audit log. Every write is one bbolt
// transaction, synced to disk before it returns, so the state is on disk
// before any service is touched.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketState = []byte("state")
	bucketAudit = []byte("audit")
	keyState    = []byte("node")
)

// DefaultMaxEntries is how many audit entries are kept when Options leave
// it unset; older ones are pruned.
const DefaultMaxEntries = 100_000

// State is the durable part of a node's status.
type State struct {
	// Desired is what the operator last asked for: "active" or "inactive".
	Desired string `json:"desired"`
	// Status is the status when the state was written; "activating" or
	// "deactivating" on disk means the agent died during a transition.
	Status string    `json:"status"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
	// Note explains a status that needs it (why the node stayed inactive).
	Note string `json:"note,omitempty"`
}

// Entry is one line of the audit log.
type Entry struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Remote   string          `json:"remote,omitempty"`
	Action   string          `json:"action"`
	Reason   string          `json:"reason,omitempty"`
	Epoch    uint64          `json:"epoch"`
	Result   string          `json:"result"`
	Message  string          `json:"message,omitempty"`
	Services []ServiceResult `json:"services,omitempty"`
}

// ServiceResult is one service's outcome inside an audit entry.
type ServiceResult struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// Store is an open state directory.
type Store struct {
	db         *bolt.DB
	maxEntries uint64
}

// Options tune a Store.
type Options struct {
	// MaxEntries bounds the audit log; DefaultMaxEntries if zero.
	MaxEntries int
}

// Open opens (or creates) the store in dir. It fails fast when another
// agent holds the same directory.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(dir, "state.db")
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: locked by another process (is another agent running on this state_dir?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketState, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	max := uint64(DefaultMaxEntries)
	if opts.MaxEntries > 0 {
		max = uint64(opts.MaxEntries)
	}
	return &Store{db: db, maxEntries: max}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// State returns the saved state; ok is false when none was ever saved.
func (s *Store) State() (st State, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketState).Get(keyState)
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &st)
	})
	if err != nil {
		return State{}, false, fmt.Errorf("read state: %w", err)
	}
	return st, ok, nil
}

// Write saves st (when non-nil) and appends entries in one synced
// transaction. Entries get their sequence numbers, and a time when they
// have none; the stored entries are returned.
func (s *Store) Write(st *State, entries ...Entry) ([]Entry, error) {
	out := make([]Entry, 0, len(entries))
	err := s.db.Update(func(tx *bolt.Tx) error {
		if st != nil {
			v, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketState).Put(keyState, v); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketAudit)
		for _, e := range entries {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			e.Seq = seq
			if e.Time.IsZero() {
				e.Time = time.Now().UTC()
			}
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := b.Put(seqKey(seq), v); err != nil {
				return err
			}
			out = append(out, e)
		}
		if len(entries) > 0 {
			return prune(b, s.maxEntries)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write store: %w", err)
	}
	return out, nil
}

// prune drops the oldest entries beyond max.
func prune(b *bolt.Bucket, max uint64) error {
	last := b.Sequence()
	if last <= max {
		return nil
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= last-max; k, _ = c.Next() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// History returns up to limit entries, newest first, with sequence numbers
// below before (all when before is 0).
func (s *Store) History(limit int, before uint64) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else if k, _ = c.Seek(seqKey(before)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return out, nil
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}
