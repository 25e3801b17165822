package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/xivo-resilience/resilience/internal/auth"
)

// loginView is the login form.
type loginView struct {
	Username string
	Next     string
	// Error says why the last attempt failed; Notice is a calmer word
	// (logged out, session expired).
	Error  string
	Notice string
	// Idle and MaxAge say when sessions end.
	Idle   string
	MaxAge string
}

// loginShow serves GET /login: the form, or the page for a user already
// logged in.
func (s *Server) loginShow(w http.ResponseWriter, r *http.Request, v *visit) {
	q := r.URL.Query()
	next := localPath(q.Get("next"))
	if v != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	lv := loginView{Next: next}
	switch {
	case q.Get("expired") != "":
		lv.Notice = "Your session has ended. Log in again to continue."
	case q.Get("out") != "":
		lv.Notice = "You are logged out."
	}
	s.renderLogin(w, r, http.StatusOK, lv)
}

// loginTokenAge bounds how long a login form may stay open.
const loginTokenAge = time.Hour

// renderLogin writes the login form with a fresh login token: a random
// value in a cookie and in the form, which the post must match (the
// double-submit pattern), so that another site cannot log a browser in.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, lv loginView) {
	lv.Idle, lv.MaxAge = humanDuration(s.opts.IdleTimeout), humanDuration(s.opts.MaxAge)
	token := auth.NewToken()
	http.SetCookie(w, &http.Cookie{
		Name: s.loginCookieName, Value: token, Path: "/", MaxAge: int(loginTokenAge / time.Second),
		HttpOnly: true, Secure: s.opts.Secure, SameSite: http.SameSiteStrictMode,
	})
	s.render(w, code, "login", pageData{Title: "Log in", CSRF: token, Body: lv})
}

// humanDuration writes a session length the way people say it.
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}
