package web

import "net/http"

// notFoundShow answers every path the page and the API do not know.
func (s *Server) notFoundShow(w http.ResponseWriter, r *http.Request, v *visit) {
	if v == nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	s.renderError(w, r, v, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
}
