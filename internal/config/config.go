// Package config reads a node's YAML file strictly: an unknown key, a wrong
// type or a missing field is an error that names the file, the line and the
// key, and the agent does not start. Nothing here reads the environment or
// the disk after Load returns, apart from Secret.Read.
package config

import (
	"time"
)

// Kind is the kind of node a config describes.
type Kind string

// Node kinds, as written in the config.
const (
	KindXiVO Kind = "xivo"
	KindCC   Kind = "cc"
	KindMDS  Kind = "mds"
	KindEdge Kind = "edge"
)

// Role is the side of the pair a node is on.
type Role string

// Roles, as written in the config.
const (
	RoleMain    Role = "main"
	RoleStandby Role = "standby"
)

// Config is one node's file.
type Config struct {
	// File is the path the config was read from; relative paths inside the
	// file were resolved against its folder.
	File string `yaml:"-"`

	Kind Kind   `yaml:"kind"`
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// Mode is how the node decides: "manual" for xivo (an operator starts
	// and stops), "follow" for cc (it follows its XiVO).
	Mode string `yaml:"mode"`
	// InitialStatus is the status a node takes when its state directory is
	// empty: "active" for a main, "inactive" for a standby unless set.
	InitialStatus string `yaml:"initial_status"`
	// StateDir holds the durable state, the audit log and service logs.
	StateDir string `yaml:"state_dir"`

	Listen Listen `yaml:"listen"`
	Peer   *Peer  `yaml:"peer"`
	// XiVO is the XiVO a cc node follows.
	XiVO *Follow `yaml:"xivo"`
	// Trunk lists the MDS a xivo node registers its SIP trunk to.
	Trunk *Trunk `yaml:"trunk"`
	// Registrar is an mds node's SIP registrar.
	Registrar *Registrar `yaml:"registrar"`
	// Edge is the edge node's entry point, and Nodes the xivo and cc
	// nodes whose status decides where it relays.
	Edge     *Edge      `yaml:"edge"`
	Nodes    []NodeLink `yaml:"nodes"`
	Routes   []Route    `yaml:"routes"`
	SIP      []SIPRoute `yaml:"sip"`
	Auth     Auth       `yaml:"auth"`
	Services []Service  `yaml:"services"`
	Log      Log        `yaml:"log"`

	// lines maps key paths to the line they were read from, for the
	// messages of Validate; nil for a config built in Go.
	lines map[string]int
}

// Listen is the agent's HTTP listener.
type Listen struct {
	Address string `yaml:"address"`
	TLS     *TLS   `yaml:"tls"`
	// InsecureHTTP allows plain HTTP on a non-loopback address.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// TLS names a certificate and its key, PEM encoded.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Peer is the other node of the pair, asked before a Start and observed.
type Peer struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Token is a read-scoped bearer token accepted by the peer.
	Token Secret `yaml:"token"`
	// CAFile verifies the peer's certificate; system roots if empty.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds the one-shot check before a Start.
	Timeout Duration `yaml:"timeout"`
}

// Follow is the XiVO a cc node follows: its services run while that XiVO
// is Active.
type Follow struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Token is a read-scoped bearer token accepted by the XiVO.
	Token  Secret `yaml:"token"`
	CAFile string `yaml:"ca_file"`
	// PollInterval paces status polls while the event stream is down.
	PollInterval Duration `yaml:"poll_interval"`
	// Timeout bounds one status request.
	Timeout Duration `yaml:"timeout"`
}

// Trunk is the XDS deployment seen from a xivo node: while Active, it
// registers to every MDS.
type Trunk struct {
	// LocalIP is the address REGISTERs are sent from and the Contact
	// names; the host of listen.address if empty.
	LocalIP string `yaml:"local_ip"`
	MDS     []MDS  `yaml:"mds"`
}

// MDS is one media server's registrar, as a xivo node registers to it.
type MDS struct {
	Name string `yaml:"name"`
	// Registrar is a SIP URI: "sip:10.0.2.1:5060" or with
	// ";transport=tcp".
	Registrar string   `yaml:"registrar"`
	Username  string   `yaml:"username"`
	Password  Secret   `yaml:"password"`
	Expiry    Duration `yaml:"expiry"`
}

// Registrar is an mds node's registrar for the trunk from the XiVO.
type Registrar struct {
	UDP            string      `yaml:"udp"`
	TCP            string      `yaml:"tcp"`
	Realm          string      `yaml:"realm"`
	Users          []TrunkUser `yaml:"users"`
	MinExpires     Duration    `yaml:"min_expires"`
	MaxExpires     Duration    `yaml:"max_expires"`
	DefaultExpires Duration    `yaml:"default_expires"`
}

// TrunkUser is a credential the registrar accepts.
type TrunkUser struct {
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// Edge is the edge's public entry point.
type Edge struct {
	// HTTP is the address users reach (HTTP, or HTTPS with TLS).
	HTTP string `yaml:"http"`
	TLS  *TLS   `yaml:"tls"`
	// Drain is a grace before open sessions to the old side are closed on
	// a switch.
	Drain Duration `yaml:"drain"`
	// RetryAfter is sent with the maintenance page.
	RetryAfter Duration `yaml:"retry_after"`
	// MaintenancePage is an HTML file served with 503 when no side is
	// usable; a short built-in page if empty.
	MaintenancePage string `yaml:"maintenance_page"`
}

// NodeLink is how the edge reaches a node whose status it follows.
type NodeLink struct {
	Name   string `yaml:"name"`
	URL    string `yaml:"url"`
	Token  Secret `yaml:"token"`
	CAFile string `yaml:"ca_file"`
}

// Route relays HTTP and WebSocket by host and path prefix.
type Route struct {
	Name       string  `yaml:"name"`
	Host       string  `yaml:"host"`
	PathPrefix string  `yaml:"path_prefix"`
	Main       Backend `yaml:"main"`
	Standby    Backend `yaml:"standby"`
}

// SIPRoute relays SIP over UDP and TCP to the Active side.
type SIPRoute struct {
	Name    string  `yaml:"name"`
	Listen  string  `yaml:"listen"`
	UDP     bool    `yaml:"udp"`
	TCP     bool    `yaml:"tcp"`
	Main    Backend `yaml:"main"`
	Standby Backend `yaml:"standby"`
}

// Backend is one side of a route: an address, and the node whose status
// decides whether it is used.
type Backend struct {
	// Name defaults to the node's name and the route's.
	Name    string       `yaml:"name"`
	Node    string       `yaml:"node"`
	Address string       `yaml:"address"`
	Health  *HealthCheck `yaml:"health"`
}

// HealthCheck is an active check of a backend.
type HealthCheck struct {
	// Path is an HTTP path to GET; empty means a TCP connect.
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	Rise     int      `yaml:"rise"`
	Fall     int      `yaml:"fall"`
}

// Auth lists who may use the agent.
type Auth struct {
	Users  []User  `yaml:"users"`
	Tokens []Token `yaml:"tokens"`
}

// User is a person who logs in to the web page.
type User struct {
	Name string `yaml:"name"`
	// PasswordHash is a bcrypt hash, as printed by `resilience hash-password`.
	PasswordHash string `yaml:"password_hash"`
	// Role is "admin" (may start and stop) or "viewer".
	Role string `yaml:"role"`
}

// Token is a machine's bearer token, stored hashed.
type Token struct {
	Name string `yaml:"name"`
	// Hash is "sha256:" and the hex digest, as printed by
	// `resilience hash-token`.
	Hash string `yaml:"hash"`
	// Scope is "read" or "operate".
	Scope string `yaml:"scope"`
}

// Service is one entry of the ordered list of services.
type Service struct {
	Name string `yaml:"name"`

	// Exactly one backend.
	Exec    *Exec    `yaml:"exec"`
	Command *Command `yaml:"command"`
	Docker  *Docker  `yaml:"docker"`

	Ready *Ready `yaml:"ready"`

	// StartTimeout bounds starting the service and waiting for readiness.
	StartTimeout Duration `yaml:"start_timeout"`
	// StopTimeout bounds stopping it.
	StopTimeout Duration `yaml:"stop_timeout"`
}

// Exec runs a program as a supervised child of the agent.
type Exec struct {
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	Dir     string            `yaml:"dir"`
	// StopGrace is the time between SIGTERM and SIGKILL.
	StopGrace Duration `yaml:"stop_grace"`
	// RestartBackoff is the first delay before a restart; it doubles up to
	// RestartBackoffMax while the process keeps dying.
	RestartBackoff    Duration `yaml:"restart_backoff"`
	RestartBackoffMax Duration `yaml:"restart_backoff_max"`
	// LogFile receives stdout and stderr; state_dir/logs/NAME.log if empty.
	LogFile string `yaml:"log_file"`
}

// Command drives a unit managed elsewhere (systemd, xivo-service). Each
// command is run with /bin/sh -c.
type Command struct {
	Start  string `yaml:"start"`
	Stop   string `yaml:"stop"`
	Status string `yaml:"status"`
}

// Docker drives a container through the Docker Engine API. Without a
// ready check, the container is ready once it runs and, if it has a
// healthcheck, is healthy.
type Docker struct {
	Container string `yaml:"container"`
	// Socket is the engine's unix socket; /var/run/docker.sock if empty.
	Socket string `yaml:"socket"`
	// StopTimeout is the engine's grace before it kills the container.
	StopTimeout Duration `yaml:"stop_timeout"`
}

// Ready says when a started service is ready. Exactly one check.
type Ready struct {
	TCP     string `yaml:"tcp"`
	HTTP    string `yaml:"http"`
	Command string `yaml:"command"`
	// Timeout bounds one attempt of the check.
	Timeout Duration `yaml:"timeout"`
	// Interval is the longest pause between attempts.
	Interval Duration `yaml:"interval"`
}

// Log sets the agent's own logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a time.Duration written as "1.5s" or "300ms".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Secret is a value read from an environment variable or a file, never
// written in the config itself.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}
