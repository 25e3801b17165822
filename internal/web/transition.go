package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/node"
)

// confirm renders the confirmation of a Start or a Stop, as a page or as
// the dialog's content. Viewers get a refusal: they can press nothing.
func (s *Server) confirm(w http.ResponseWriter, r *http.Request, v *visit, action string) {
	if !v.sess.admin() {
		s.renderError(w, r, v, http.StatusForbidden, "Your role ("+v.sess.role+") may look but not start or stop services.")
		return
	}
	partial := r.URL.Query().Get("partial") != ""
	cv := s.confirmView(r.Context(), v, action, partial)
	if partial {
		s.renderFragment(w, http.StatusOK, "confirm", cv)
		return
	}
	title := "Start services"
	if action == "stop" {
		title = "Stop services"
	}
	s.render(w, http.StatusOK, "confirm", pageData{
		Title: title, Nav: "resilience", Node: cv.Snap, User: v.userView(), CSRF: v.sess.csrf, Body: cv,
	})
}

// transition runs a Start or a Stop posted from a form, then redirects to
// the page (POST, redirect, GET) with a message saying how it went. It
// waits ActionWait at most: a longer transition goes on, and the page
// shows its progress.
func (s *Server) transition(w http.ResponseWriter, r *http.Request, v *visit, action string) {
	reason := strings.Join(strings.Fields(r.PostForm.Get("reason")), " ")
	if len(reason) > api.MaxReason {
		s.sessions.setFlash(v.id, flash{Kind: "error", Text: fmt.Sprintf("The reason is too long: %d characters at most.", api.MaxReason)})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	force := action == "start" && r.PostForm.Get("force") != ""
	req := v.request(r, reason, force)
	before := s.opts.Machine.Snapshot()
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ActionWait)
	defer cancel()
	var snap node.Snapshot
	var err error
	if action == "start" {
		snap, err = s.opts.Machine.StartServices(ctx, req)
	} else {
		snap, err = s.opts.Machine.StopServices(ctx, req)
	}
	if r.Context().Err() != nil {
		return // the browser went away; the transition goes on
	}
	s.sessions.setFlash(v.id, outcome(action, before, snap, err))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// outcome is the message for the end (or not) of a transition.
func outcome(action string, before, snap node.Snapshot, err error) flash {
	verb, done := "Start services", "started"
	if action == "stop" {
		verb, done = "Stop services", "stopped"
	}
	switch {
	case err == nil && action == "start" && before.Status == node.Active && before.Desired == node.Active,
		err == nil && action == "stop" && before.Status == node.Inactive && before.Desired == node.Inactive:
		return flash{Kind: "info", Text: fmt.Sprintf("%s was already %s: nothing changed.", snap.Name, snap.Status)}
	case err == nil:
		return flash{Kind: "ok", Text: fmt.Sprintf("Services %s on %s: %s at epoch %d.", done, snap.Name, snap.Status, snap.Epoch)}
	case errors.Is(err, context.DeadlineExceeded):
		return flash{Kind: "info", Text: fmt.Sprintf("%s is under way on %s; this page shows its progress.", verb, snap.Name)}
	case errors.Is(err, node.ErrTransitionInProgress):
		return flash{Kind: "warn", Text: "Another transition is in progress: wait for it to end, then try again."}
	case errors.Is(err, node.ErrPeerActive):
		return flash{Kind: "error", Text: verb + " refused: " + err.Error() + "."}
	case errors.Is(err, node.ErrTransitionFailed):
		return flash{Kind: "error", Text: verb + " failed: " + snap.Error + ". " + verb + " may be retried."}
	}
	return flash{Kind: "error", Text: verb + " failed: " + err.Error()}
}
