// Package api is the node agent's HTTP API (DESIGN section 4): status,
// start and stop, events as Server-Sent Events, history, health and
// metrics. Handlers only translate HTTP to calls on the node and back; the
// one JSON error helper lives here.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/node"
	"github.com/xivo-resilience/resilience/internal/store"
)

// Source is a node's status feed, encoded once per change; every kind of
// node has one (*node.Machine, the mds registrar, the edge).
type Source interface {
	Encoded() []byte
	Subscribe() (<-chan []byte, func())
}

// Machine is a node whose services are started and stopped (xivo and cc);
// *node.Machine is one.
type Machine interface {
	Source
	Snapshot() node.Snapshot
	StartServices(ctx context.Context, req node.Request) (node.Snapshot, error)
	StopServices(ctx context.Context, req node.Request) (node.Snapshot, error)
}

// History reads the audit log; *store.Store is one.
type History interface {
	History(limit int, before uint64) ([]store.Entry, error)
}

// Authenticator finds who makes a request; the bearer token check is the
// default, and the web package adds session cookies.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Principal, bool)
}

// Options are the Server's dependencies.
type Options struct {
	// Status serves /api/v1/status and the events; Machine if empty.
	Status Source
	// Machine adds start, stop and active; nil for kinds without services.
	Machine Machine
	History History
	Auth    Authenticator
	// Metrics serves /metrics; nil serves 404.
	Metrics http.Handler
	Logger  *slog.Logger
	// Heartbeat is the pause between SSE comments on an idle stream
	// (default 5s).
	Heartbeat time.Duration
	// MaxSubscribers bounds open event streams (default 1024).
	MaxSubscribers int
}

// MaxBody bounds request bodies: a start or stop request is a few bytes.
const MaxBody = 16 << 10

// Server serves the API.
type Server struct {
	opts Options
	log  *slog.Logger
	subs chan struct{}
}

// New checks the options and builds a Server.
func New(opts Options) (*Server, error) {
	if opts.Status == nil && opts.Machine != nil {
		opts.Status = opts.Machine
	}
	if opts.Status == nil || opts.History == nil || opts.Auth == nil {
		return nil, errors.New("api: status, history and auth are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = 1024
	}
	return &Server{opts: opts, log: opts.Logger, subs: make(chan struct{}, opts.MaxSubscribers)}, nil
}

// Register adds the API's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /api/v1/status", s.need(auth.ScopeRead, s.status))
	mux.HandleFunc("GET /api/v1/events", s.need(auth.ScopeRead, s.events))
	mux.HandleFunc("GET /api/v1/history", s.need(auth.ScopeRead, s.history))
	if s.opts.Machine != nil {
		mux.HandleFunc("GET /api/v1/active", s.active)
		mux.HandleFunc("POST /api/v1/services/start", s.need(auth.ScopeOperate, s.start))
		mux.HandleFunc("POST /api/v1/services/stop", s.need(auth.ScopeOperate, s.stop))
	}
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.need(auth.ScopeRead, s.opts.Metrics.ServeHTTP))
	}
	mux.HandleFunc("/api/", s.notFound)
}

// Handler returns a mux with the API alone.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

type principalKey struct{}

// need wraps h with authentication and a scope check.
func (s *Server) need(scope auth.Scope, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.opts.Auth.Authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="resilience"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		if !p.Scope.Allows(scope) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("%s has scope %s; this needs %s", p.Name, p.Scope, scope))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// BearerAuth authenticates with the configured tokens.
type BearerAuth struct{ Tokens *auth.Tokens }

// Authenticate reads the Authorization header.
func (b BearerAuth) Authenticate(r *http.Request) (auth.Principal, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return auth.Principal{}, false
	}
	return b.Tokens.Lookup(strings.TrimSpace(token))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// active answers health checkers: 200 only when the node serves.
func (s *Server) active(w http.ResponseWriter, r *http.Request) {
	snap := s.opts.Machine.Snapshot()
	ok := snap.Status == node.Active
	for _, svc := range snap.Services {
		ok = ok && svc.State == node.ServiceRunning
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "%s epoch %d\n", snap.Status, snap.Epoch)
		return
	}
	fmt.Fprintf(w, "active epoch %d\n", snap.Epoch)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(s.opts.Status.Encoded())
}

// StartRequest is the body of POST /api/v1/services/start.
type StartRequest struct {
	Force  bool   `json:"force"`
	Reason string `json:"reason"`
}

// StopRequest is the body of POST /api/v1/services/stop.
type StopRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	var body StartRequest
	if !decode(w, r, &body) {
		return
	}
	req := s.request(r, body.Reason)
	req.Force = body.Force
	snap, err := s.opts.Machine.StartServices(r.Context(), req)
	s.transitionResult(w, r, snap, err)
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	var body StopRequest
	if !decode(w, r, &body) {
		return
	}
	snap, err := s.opts.Machine.StopServices(r.Context(), s.request(r, body.Reason))
	s.transitionResult(w, r, snap, err)
}

// MaxReason bounds the reason an operator gives.
const MaxReason = 500

func (s *Server) request(r *http.Request, reason string) node.Request {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return node.Request{Actor: p.Name, Remote: RemoteHost(r), Reason: reason}
}

// RemoteHost is the caller's address without the port.
func RemoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// TransitionError is the body of a refused or failed transition: the error
// and the node's status after it.
type TransitionError struct {
	Error  ErrorBody      `json:"error"`
	Status *node.Snapshot `json:"status,omitempty"`
}

func (s *Server) transitionResult(w http.ResponseWriter, r *http.Request, snap node.Snapshot, err error) {
	var code int
	var kind string
	var following *node.FollowingError
	switch {
	case err != nil && errors.As(err, &following):
		code, kind = http.StatusConflict, "following"
		writeJSON(w, code, TransitionError{Error: ErrorBody{Code: kind, Message: err.Error()}})
		return
	case err == nil:
		writeJSON(w, http.StatusOK, snap)
		return
	case errors.Is(err, node.ErrTransitionInProgress):
		code, kind = http.StatusConflict, "transition_in_progress"
	case errors.Is(err, node.ErrPeerActive):
		code, kind = http.StatusConflict, "peer_active"
	case errors.Is(err, node.ErrTransitionFailed):
		code, kind = http.StatusInternalServerError, "transition_failed"
	case r.Context().Err() != nil:
		return // the client went away; the transition goes on
	default:
		code, kind = http.StatusInternalServerError, "internal"
	}
	writeJSON(w, code, TransitionError{Error: ErrorBody{Code: kind, Message: err.Error()}, Status: &snap})
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 50, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "limit: "+err.Error())
		return
	}
	before, err := intParam(q.Get("before"), 0, 0, 1<<62)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "before: "+err.Error())
		return
	}
	entries, err := s.opts.History.History(limit, uint64(before))
	if err != nil {
		s.log.Error("history", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "cannot read the audit log")
		return
	}
	if entries == nil {
		entries = []store.Entry{}
	}
	writeJSON(w, http.StatusOK, HistoryResponse{Entries: entries})
}

// HistoryResponse is the body of GET /api/v1/history.
type HistoryResponse struct {
	Entries []store.Entry `json:"entries"`
}

func intParam(v string, def, lo, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("must be a whole number from %d to %d", lo, hi)
	}
	return n, nil
}

var knownPaths = map[string]string{
	"/api/v1/status":         "GET",
	"/api/v1/events":         "GET",
	"/api/v1/history":        "GET",
	"/api/v1/active":         "GET",
	"/api/v1/services/start": "POST",
	"/api/v1/services/stop":  "POST",
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if m, ok := knownPaths[r.URL.Path]; ok && (s.opts.Machine != nil || m == "GET" && r.URL.Path != "/api/v1/active") {
		w.Header().Set("Allow", m)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" "+r.URL.Path+": use "+m)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
}

// decode reads a JSON body strictly: the right content type, a bounded
// size, no unknown fields, nothing after the object. An empty body is an
// empty request. It writes the error itself and returns false on failure.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", MaxBody))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		return false
	}
	if len(body) == 0 {
		return true
	}
	if err := strictJSON(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", err.Error())
		return false
	}
	return true
}

// strictJSON decodes one JSON object with no unknown fields.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return fmt.Errorf("field %s: must be %s, not %s", te.Field, te.Type, te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("malformed JSON: unexpected end of body")
		}
		return fmt.Errorf("malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errors.New("malformed JSON: data after the object")
	}
	if r, ok := v.(interface{ reason() string }); ok && len(r.reason()) > MaxReason {
		return fmt.Errorf("field reason: at most %d characters", MaxReason)
	}
	return nil
}

func (r *StartRequest) reason() string { return r.Reason }
func (r *StopRequest) reason() string  { return r.Reason }

// ErrorBody is the error object of every error response.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorResponse struct {
	Error ErrorBody `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorResponse{Error: ErrorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encode"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
