package web

import (
	"bytes"
	"net/http"
	"time"
)

// staticShow serves GET /static/{name}: an embedded file under its
// checksummed name, cached for a year.
func (s *Server) staticShow(w http.ResponseWriter, r *http.Request) {
	a, ok := s.assets.byName[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
