package web

import "net/http"

// resilienceShow serves GET /: the Resilience Management page.
func (s *Server) resilienceShow(w http.ResponseWriter, r *http.Request, v *visit) {
	lv := s.liveView(v)
	s.render(w, http.StatusOK, "resilience", pageData{
		Title:   "Resilience Management",
		Nav:     "resilience",
		Node:    lv.Snap,
		User:    v.userView(),
		CSRF:    v.sess.csrf,
		Flash:   s.sessions.popFlash(v.id),
		Refresh: lv.Busy,
		Body:    lv,
	})
}
