// Package web is the node agent's Resilience Management page, the page the
// seed's administrators use (Services > IPBX > Resilience Management): the
// node's status, its services and its peer, the Start services and Stop
// services buttons, and the audit log.
//
// Pages are rendered on the server from html/template files embedded in the
// binary and parsed once at start-up; the CSS and a little plain JavaScript
// are embedded too and served under a checksummed URL. Everything essential
// works without JavaScript (forms that post and redirect back); with it, the
// page follows the node live through the API's event stream and confirms an
// action in a dialog.
//
// People log in with the configured users. Sessions live in memory, keyed
// by the SHA-256 of a random 256-bit cookie value, and expire when idle and
// at an absolute age. Every state-changing request needs the session's CSRF
// token (a form field, or the X-CSRF-Token header for the API). Failed logins
// are throttled per remote address.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// Machine is the node the page shows and drives; *node.Machine is one.
type Machine interface {
	Snapshot() node.Snapshot
	StartServices(ctx context.Context, req node.Request) (node.Snapshot, error)
	StopServices(ctx context.Context, req node.Request) (node.Snapshot, error)
	// CheckPeer asks the peer for its status once, for the confirmation
	// of a Start.
	CheckPeer(ctx context.Context) (node.Snapshot, error)
}

// History reads the audit log; *store.Store is one.
type History interface {
	History(limit int, before uint64) ([]store.Entry, error)
}

// Users checks passwords; *auth.Users is one.
type Users interface {
	Check(name, password string) (auth.User, error)
}

var (
	_ Machine = (*node.Machine)(nil)
	_ History = (*store.Store)(nil)
	_ Users   = (*auth.Users)(nil)
)

// Options are the Server's dependencies and settings. Zero durations and
// counts take the defaults named beside them.
type Options struct {
	Machine Machine
	History History
	Users   Users
	// Secure tells that the listener has TLS: cookies are then Secure
	// (with the __Host- prefix) and pages send Strict-Transport-Security.
	Secure bool
	Logger *slog.Logger

	// IdleTimeout ends a session nobody used for that long (30 min).
	IdleTimeout time.Duration
	// MaxAge ends a session that long after its login, used or not (12 h).
	MaxAge time.Duration
	// MaxSessions bounds the sessions kept; the least recently used one
	// goes first (1000).
	MaxSessions int

	// LoginFailures is how many failed logins from one address are
	// allowed before it is locked out (5).
	LoginFailures int
	// LoginLockout is the first lockout (30 s); each further failure
	// doubles it, up to 15 min.
	LoginLockout time.Duration

	// ActionWait is how long a Start or Stop posted from a plain form waits
	// for the transition to end before the page is shown again with the
	// transition under way (10 s).
	ActionWait time.Duration

	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Server serves the web page. Build it with New, add its routes to a mux
// with Register, and give it to the API as an Authenticator so that the
// page's scripts reach the API with the session cookie.
type Server struct {
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	tmpl     *templates
	assets   *assets
	sessions *sessions
	throttle *throttle
	// checks bounds concurrent password checks: bcrypt is slow on purpose,
	// and a flood of logins must not take every core.
	checks chan struct{}
	cop    *http.CrossOriginProtection

	cookieName      string
	loginCookieName string

	// status is set on the read-only page of an mds or edge node, which
	// has no Machine.
	status *statusPage
}

// New checks the options, parses the templates and loads the static files;
// a missing or broken template is an error here, not at the first request.
func New(opts Options) (*Server, error) {
	if opts.Machine == nil || opts.History == nil || opts.Users == nil {
		return nil, errors.New("web: machine, history and users are required")
	}
	return newServer(opts, nil)
}

func newServer(opts Options, status *statusPage) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 12 * time.Hour
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 1000
	}
	if opts.LoginFailures <= 0 {
		opts.LoginFailures = 5
	}
	if opts.LoginLockout <= 0 {
		opts.LoginLockout = 30 * time.Second
	}
	if opts.ActionWait <= 0 {
		opts.ActionWait = 10 * time.Second
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		sessions: newSessions(opts.IdleTimeout, opts.MaxAge, opts.MaxSessions, opts.Now),
		throttle: newThrottle(opts.LoginFailures, opts.LoginLockout, 15*time.Minute, opts.Now),
		checks:   make(chan struct{}, 2),
		cop:      http.NewCrossOriginProtection(),
		status:   status,
	}
	var err error
	if s.assets, err = loadAssets(staticFS); err != nil {
		return nil, err
	}
	if s.tmpl, err = parseTemplates(templateFS, s.funcs()); err != nil {
		return nil, err
	}
	if err := s.smoke(); err != nil {
		return nil, err
	}
	s.cookieName, s.loginCookieName = cookieNames(s.snapshot().Name, opts.Secure)
	return s, nil
}

var unsafeCookieChars = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// cookieNames names the cookies after the node, so that two agents on one
// host name (two ports of 127.0.0.1) do not log each other out. Under TLS
// the __Host- prefix makes the browser refuse them unless Secure, Path=/
// and without a Domain.
func cookieNames(nodeName string, secure bool) (session, login string) {
	suffix := unsafeCookieChars.ReplaceAllString(nodeName, "_")
	prefix := "resilience"
	if secure {
		prefix = "__Host-resilience"
	}
	return prefix + "-session-" + suffix, prefix + "-login-" + suffix
}

// Register adds the page's routes to mux, beside the API's.
func (s *Server) Register(mux *http.ServeMux) {
	if s.status != nil {
		s.registerStatus(mux)
		return
	}
	mux.Handle("GET /{$}", s.page(s.resilienceShow))
	mux.Handle("GET /partials/live", s.partial(s.liveShow))
	mux.Handle("GET /history", s.page(s.historyShow))
	mux.Handle("GET /services/start", s.page(s.startConfirm))
	mux.Handle("POST /services/start", s.action(true, s.startSubmit))
	mux.Handle("GET /services/stop", s.page(s.stopConfirm))
	mux.Handle("POST /services/stop", s.action(true, s.stopSubmit))
	mux.Handle("GET /login", s.public(s.loginShow))
	mux.Handle("POST /login", s.public(s.loginSubmit))
	mux.Handle("POST /logout", s.action(false, s.logoutSubmit))
	mux.HandleFunc("GET /static/{name}", s.staticShow)
	mux.Handle("/", s.public(s.notFoundShow))
}

// Handler returns a mux with the page alone, for tests.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// BackgroundHeader marks the page's own background requests (live
// refreshes): they do not count as activity, so an idle session still
// expires while a page stays open.
const BackgroundHeader = "X-Resilience-Background"

// CSRFHeader carries the session's CSRF token on the page's API requests.
const CSRFHeader = "X-CSRF-Token"

// scopeNoCSRF is given to a session caller whose state-changing request
// lacks the CSRF token: the API then answers 403, naming the cause.
const scopeNoCSRF auth.Scope = "none (missing or wrong " + CSRFHeader + " header)"

// Authenticate finds the session of an API request by its cookie, so that
// the page's scripts (the event stream, Start and Stop) use the API as the
// logged-in user. A state-changing request must carry the session's CSRF
// token in the X-CSRF-Token header and come from this origin; without them
// the caller is known but may do nothing, and the API answers 403.
func (s *Server) Authenticate(r *http.Request) (auth.Principal, bool) {
	c, err := r.Cookie(s.cookieName)
	if err != nil {
		return auth.Principal{}, false
	}
	sess, ok := s.sessions.get(c.Value, r.Header.Get(BackgroundHeader) == "")
	if !ok {
		return auth.Principal{}, false
	}
	p := auth.Principal{Name: sess.user, Scope: sess.scope}
	if !safeMethod(r.Method) && (!auth.Equal(r.Header.Get(CSRFHeader), sess.csrf) || s.cop.Check(r) != nil) {
		p.Scope = scopeNoCSRF
	}
	return p, true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
