package web

import "net/http"

// startConfirm serves GET /services/start: the confirmation of Start
// services, with what a live check of the peer found. With ?partial=1 it
// is the content of the page's dialog.
func (s *Server) startConfirm(w http.ResponseWriter, r *http.Request, v *visit) {
	s.confirm(w, r, v, "start")
}
