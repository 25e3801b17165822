package web

import "net/http"

// liveShow serves GET /partials/live: the live part of the page alone,
// which the page's script swaps in at every status event.
func (s *Server) liveShow(w http.ResponseWriter, r *http.Request, v *visit) {
	s.renderFragment(w, http.StatusOK, "live", s.liveView(v))
}
