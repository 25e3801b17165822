package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/auth"
)

// Limits of the login form's fields; bcrypt reads 72 bytes at most.
const (
	maxUsername = 128
	maxPassword = 1024
)

// loginSubmit serves POST /login: throttle, login token, password, then a
// new session (never one the browser brought along).
func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request, old *visit) {
	host := api.RemoteHost(r)
	key := addrKey(host)
	if d := s.throttle.wait(key); d > 0 {
		s.loginLocked(w, r, host, d, loginView{})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, loginView{Error: "The form could not be read. Try again."})
		return
	}
	name, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	lv := loginView{Username: name, Next: localPath(r.PostForm.Get("next"))}
	c, err := r.Cookie(s.loginCookieName)
	if err != nil || c.Value == "" || !auth.Equal(c.Value, r.PostForm.Get("csrf")) || s.cop.Check(r) != nil {
		s.log.Warn("login form without a valid token refused", "remote", host)
		lv.Error = "This login form has expired or was not sent from this page. Try again (your browser must accept cookies)."
		s.renderLogin(w, r, http.StatusForbidden, lv)
		return
	}
	user, err := s.checkPassword(r.Context(), name, password)
	if r.Context().Err() != nil {
		return
	}
	if err != nil {
		lock := s.throttle.fail(key)
		s.log.Warn("login failed", "user", truncate(name, 64), "remote", host, "locked_for", lock)
		if lock > 0 {
			s.loginLocked(w, r, host, lock, lv)
			return
		}
		lv.Error = "Wrong user name or password."
		s.renderLogin(w, r, http.StatusUnauthorized, lv)
		return
	}
	s.throttle.succeed(key)
	if old != nil {
		s.sessions.delete(old.id) // one browser, one session
	}
	id, _ := s.sessions.create(user)
	s.setSessionCookie(w, id)
	s.clearCookie(w, s.loginCookieName)
	s.log.Info("login", "user", user.Name, "role", user.Role, "remote", host)
	http.Redirect(w, r, lv.Next, http.StatusSeeOther)
}

// checkPassword runs bcrypt with at most cap(s.checks) checks at a time.
func (s *Server) checkPassword(ctx context.Context, name, password string) (auth.User, error) {
	if name == "" || len(name) > maxUsername || len(password) > maxPassword {
		return auth.User{}, auth.ErrBadCredentials
	}
	select {
	case s.checks <- struct{}{}:
	case <-ctx.Done():
		return auth.User{}, ctx.Err()
	}
	defer func() { <-s.checks }()
	return s.opts.Users.Check(name, password)
}

// loginLocked answers 429 with Retry-After while an address is locked out.
func (s *Server) loginLocked(w http.ResponseWriter, r *http.Request, host string, d time.Duration, lv loginView) {
	secs := int(math.Ceil(d.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	lv.Error = fmt.Sprintf("Too many failed logins from %s. Try again in %s.", host, humanSeconds(secs))
	s.renderLogin(w, r, http.StatusTooManyRequests, lv)
}

func humanSeconds(secs int) string {
	if secs < 120 {
		return fmt.Sprintf("%d seconds", secs)
	}
	return fmt.Sprintf("%d minutes", (secs+59)/60)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
