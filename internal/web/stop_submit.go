package web

import "net/http"

// stopSubmit serves POST /services/stop, the form of the confirmation: it
// stops the services, waits a little for the end, and goes back to the
// page with a message.
func (s *Server) stopSubmit(w http.ResponseWriter, r *http.Request, v *visit) {
	s.transition(w, r, v, "stop")
}
