// Package node is the status machine of a xivo (and, later, cc) node: which
// status it is in, its epoch, one transition at a time, the split-brain
// guard before a Start, and recovery after a crash. Services, the peer, the
// store and metrics are passed in; the HTTP surface lives in package api.
package node

import (
	"errors"
	"fmt"
	"time"
)

// Status is a node's status, spelled as the API spells it.
type Status string

// Node statuses.
const (
	Inactive     Status = "inactive"
	Activating   Status = "activating"
	Active       Status = "active"
	Deactivating Status = "deactivating"
	Failed       Status = "failed"
)

// Statuses lists every status, for metrics and validation.
var Statuses = []Status{Inactive, Activating, Active, Deactivating, Failed}

// ServiceState is one service's state.
type ServiceState string

// Service states.
const (
	ServiceStopped    ServiceState = "stopped"
	ServiceStarting   ServiceState = "starting"
	ServiceRunning    ServiceState = "running"
	ServiceStopping   ServiceState = "stopping"
	ServiceRestarting ServiceState = "restarting"
	ServiceFailed     ServiceState = "failed"
)

// Snapshot is the whole observable status of a node: what the API serves
// and the events carry.
type Snapshot struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Role string `json:"role"`
	Mode string `json:"mode"`
	// Revision grows with every change, so a reader can order snapshots.
	Revision uint64 `json:"revision"`
	Status   Status `json:"status"`
	// Desired is what the operator last asked for.
	Desired Status    `json:"desired"`
	Epoch   uint64    `json:"epoch"`
	Since   time.Time `json:"since"`
	// Transition is set while a Start or Stop runs.
	Transition *Transition `json:"transition,omitempty"`
	// Error says which service failed and why, when Status is failed.
	Error    string          `json:"error,omitempty"`
	Services []ServiceStatus `json:"services"`
	Peer     *PeerView       `json:"peer,omitempty"`
	// Takeover is set when this node was started by force while its peer
	// was Active.
	Takeover *Takeover `json:"takeover,omitempty"`
	// Followed is the XiVO a cc node follows, as last observed.
	Followed *Followed `json:"followed,omitempty"`
	// MDS are a xivo node's trunk registrations to the media servers.
	MDS      []Registration `json:"mds,omitempty"`
	Warnings []Warning      `json:"warnings"`
}

// Transition describes the transition under way.
type Transition struct {
	Action    string    `json:"action"`
	Actor     string    `json:"actor"`
	StartedAt time.Time `json:"started_at"`
}

// ServiceStatus is one service inside a Snapshot.
type ServiceStatus struct {
	Name     string       `json:"name"`
	State    ServiceState `json:"state"`
	Error    string       `json:"error,omitempty"`
	Since    time.Time    `json:"since"`
	Restarts int          `json:"restarts,omitempty"`
}

// PeerView is what this node last observed of its peer.
type PeerView struct {
	Name       string    `json:"name"`
	Status     Status    `json:"status,omitempty"`
	Desired    Status    `json:"desired,omitempty"`
	Epoch      uint64    `json:"epoch,omitempty"`
	Takeover   *Takeover `json:"takeover,omitempty"`
	ObservedAt time.Time `json:"observed_at,omitzero"`
	// Error is set while the peer cannot be reached.
	Error string `json:"error,omitempty"`
}

// Followed is what a cc node knows of the XiVO it follows, and how fresh
// that knowledge is.
type Followed struct {
	Name    string `json:"name"`
	Status  Status `json:"status,omitempty"`
	Desired Status `json:"desired,omitempty"`
	Epoch   uint64 `json:"epoch,omitempty"`
	// ObservedAt is when the XiVO last confirmed its status (an event, a
	// heartbeat of the stream, or a poll).
	ObservedAt time.Time `json:"observed_at,omitzero"`
	// Via is "events" while the event stream is up, "poll" while it is
	// down and polls answer.
	Via string `json:"via,omitempty"`
	// Error is set while the XiVO cannot be reached, since UnreachableSince.
	Error            string    `json:"error,omitempty"`
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

// Registration is a xivo node's SIP trunk registration to one MDS.
type Registration struct {
	Name      string `json:"name"`
	Registrar string `json:"registrar"`
	// State is unregistered, registering, registered, failed or
	// unregistering.
	State        string    `json:"state"`
	Expires      time.Time `json:"expires,omitzero"`
	LastResponse string    `json:"last_response,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Since        time.Time `json:"since,omitzero"`
}

// Takeover records a forced Start against an Active peer.
type Takeover struct {
	From      string    `json:"from"`
	Epoch     uint64    `json:"epoch"`
	PeerEpoch uint64    `json:"peer_epoch"`
	At        time.Time `json:"at"`
}

// Warning is something an operator should see on the page.
type Warning struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// Warning codes.
const (
	WarnPeerUnreachableAtStart = "peer_unreachable_at_start"
	WarnStayedInactive         = "stayed_inactive"
	WarnSuperseded             = "superseded"
	WarnPeerStillActive        = "peer_still_active"
	WarnBothActive             = "both_active"
	WarnPeerUnreachable        = "peer_unreachable"
	WarnXiVOUnreachable        = "xivo_unreachable"
)

// ErrTransitionInProgress refuses a request while another transition runs.
var ErrTransitionInProgress = errors.New("a transition is in progress: wait for it to end")

// ErrPeerActive is matched by a PeerActiveError.
var ErrPeerActive = errors.New("peer is active")

// ErrTransitionFailed is matched by the error of a Start or Stop that ended
// in the failed status.
var ErrTransitionFailed = errors.New("transition failed")

// FollowingError refuses an operator's Start or Stop on a node that
// follows its XiVO.
type FollowingError struct {
	Node, XiVO string
}

func (e *FollowingError) Error() string {
	return fmt.Sprintf("%s follows %s: start or stop services on %s, and %s follows", e.Node, e.XiVO, e.XiVO, e.Node)
}

// PeerActiveError refuses a Start while the peer serves.
type PeerActiveError struct {
	Peer   string
	Status Status
	Epoch  uint64
}

func (e *PeerActiveError) Error() string {
	return fmt.Sprintf("%s is %s (epoch %d): stop services on %s first, or force a takeover (make-before-break) and then stop services there",
		e.Peer, e.Status, e.Epoch, e.Peer)
}

// Is makes errors.Is(err, ErrPeerActive) true.
func (e *PeerActiveError) Is(target error) bool { return target == ErrPeerActive }

// FailedError is a transition that ended in the failed status.
type FailedError struct {
	Action  string
	Service string
	Err     string
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("%s services failed: %s: %s", e.Action, e.Service, e.Err)
}

// Is makes errors.Is(err, ErrTransitionFailed) true.
func (e *FailedError) Is(target error) bool { return target == ErrTransitionFailed }
