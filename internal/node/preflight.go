package node

import "context"

// ErrNoPeer is returned by CheckPeer on a node that has no peer.
var ErrNoPeer = errNoPeer

// CheckPeer asks the peer for its status once, with the same short timeout
// as the check that precedes a Start, and records what it found as the
// observed peer view. The web page calls it to tell an operator, before
// they confirm Start services, what the Start will meet.
func (m *Machine) CheckPeer(ctx context.Context) (Snapshot, error) {
	return m.checkPeer(ctx)
}

// Serving tells whether s runs, or is bringing up, its services (a failed
// Start counts): a Start on the other node of the pair is then a takeover.
func (s Snapshot) Serving() bool { return serving(s) }
