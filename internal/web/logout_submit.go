package web

import (
	"net/http"

	"github.com/xivo-resilience/resilience/internal/api"
)

// logoutSubmit serves POST /logout: the session ends on the server, the
// cookie is cleared, and the login form says so.
func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request, v *visit) {
	s.sessions.delete(v.id)
	s.clearCookie(w, s.cookieName)
	s.log.Info("logout", "user", v.sess.user, "remote", api.RemoteHost(r))
	http.Redirect(w, r, "/login?out=1", http.StatusSeeOther)
}
