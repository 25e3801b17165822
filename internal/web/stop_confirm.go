package web

import "net/http"

// stopConfirm serves GET /services/stop: the confirmation of Stop
// services. With ?partial=1 it is the content of the page's dialog.
func (s *Server) stopConfirm(w http.ResponseWriter, r *http.Request, v *visit) {
	s.confirm(w, r, v, "stop")
}
