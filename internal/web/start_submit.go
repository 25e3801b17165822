package web

import "net/http"

// startSubmit serves POST /services/start, the form of the confirmation:
// it starts the services, waits a little for the end, and goes back to the
// page with a message.
func (s *Server) startSubmit(w http.ResponseWriter, r *http.Request, v *visit) {
	s.transition(w, r, v, "start")
}
