package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/xivo-resilience/resilience/internal/api"
	"github.com/xivo-resilience/resilience/internal/auth"
	"github.com/xivo-resilience/resilience/internal/node"
)

// visit is a request by a logged-in user.
type visit struct {
	id   string
	sess session
}

func (v *visit) userView() *userView {
	return &userView{Name: v.sess.user, Role: v.sess.role, Admin: v.sess.admin()}
}

// request is the node request an action of this visit makes: the audit log
// names the user and the address.
func (v *visit) request(r *http.Request, reason string, force bool) node.Request {
	return node.Request{Actor: v.sess.user, Remote: api.RemoteHost(r), Reason: reason, Force: force}
}

type handler func(w http.ResponseWriter, r *http.Request, v *visit)

// contentSecurityPolicy allows this origin's own scripts and styles only:
// no inline script, no inline style, no framing, forms post here only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// secureHeaders are sent with every page and fragment.
func (s *Server) secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.Set("Cache-Control", "no-store")
	if s.opts.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// public serves a page anyone may see (login, not found); the visit is
// set when the caller happens to be logged in.
func (s *Server) public(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.secureHeaders(w)
		v, _ := s.visit(r, true)
		h(w, r, v)
	})
}

// page serves a page to logged-in users; others go to the login form and
// come back after it.
func (s *Server) page(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.secureHeaders(w)
		v, ok := s.visit(r, true)
		if !ok {
			if r.URL.Query().Get("partial") != "" {
				http.Error(w, "log in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, v)
	})
}

// partial serves a fragment to the page's scripts: 401 (not a redirect)
// when the session is gone, so that the script can send the user to the
// login form.
func (s *Server) partial(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.secureHeaders(w)
		v, ok := s.visit(r, r.Header.Get(BackgroundHeader) == "")
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		h(w, r, v)
	})
}

// maxForm bounds a form post: a reason and a few fields.
const maxForm = 8 << 10

// action serves a state-changing form post: logged in, from this origin,
// with the session's CSRF token, and an admin when admin is set.
func (s *Server) action(admin bool, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.secureHeaders(w)
		v, ok := s.visit(r, true)
		if !ok {
			http.Redirect(w, r, "/login?expired=1", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.renderError(w, r, v, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		if err := s.cop.Check(r); err != nil {
			s.log.Warn("cross-origin form refused", "path", r.URL.Path, "user", v.sess.user, "remote", api.RemoteHost(r))
			s.renderError(w, r, v, http.StatusForbidden, "This request came from another site and was refused.")
			return
		}
		if !auth.Equal(r.PostForm.Get("csrf"), v.sess.csrf) {
			s.log.Warn("form without a valid CSRF token refused", "path", r.URL.Path, "user", v.sess.user, "remote", api.RemoteHost(r))
			s.renderError(w, r, v, http.StatusForbidden, "The security token of this form is missing or out of date. Reload the page and try again.")
			return
		}
		if admin && !v.sess.admin() {
			s.renderError(w, r, v, http.StatusForbidden, "Your role ("+v.sess.role+") may look but not start or stop services.")
			return
		}
		h(w, r, v)
	})
}

// visit finds the request's session; touch counts it as activity.
func (s *Server) visit(r *http.Request, touch bool) (*visit, bool) {
	c, err := r.Cookie(s.cookieName)
	if err != nil {
		return nil, false
	}
	sess, ok := s.sessions.get(c.Value, touch)
	if !ok {
		return nil, false
	}
	return &visit{id: c.Value, sess: sess}, true
}

// setSessionCookie sends the session cookie: HttpOnly, SameSite=Strict,
// Path=/, Secure under TLS. It has no Max-Age: the browser drops it when
// it closes, and the server ends the session on its own schedule anyway.
func (s *Server) setSessionCookie(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cookieName, Value: id, Path: "/",
		HttpOnly: true, Secure: s.opts.Secure, SameSite: http.SameSiteStrictMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.opts.Secure, SameSite: http.SameSiteStrictMode,
	})
}

// localPath keeps a redirect target on this site: a path, not a URL that
// could send the user elsewhere after the login.
func localPath(p string) string {
	if p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/partials/") {
		return "/"
	}
	return p
}
