package api

import (
	"net/http"
	"time"
)

// events streams the status as Server-Sent Events: the current status at
// once, then one `event: status` per change, and a comment line every
// Heartbeat so that readers can tell a dead stream from a quiet one. A
// reader too slow to keep up loses intermediate snapshots, never the last.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	select {
	case s.subs <- struct{}{}:
		defer func() { <-s.subs }()
	default:
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", "too many event streams open; try again later")
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	ch, cancel := s.opts.Status.Subscribe()
	defer cancel()
	tick := time.NewTicker(s.opts.Heartbeat)
	defer tick.Stop()
	buf := make([]byte, 0, 4096)
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			buf = append(buf[:0], "event: status\ndata: "...)
			buf = append(buf, b...)
			buf = append(buf, "\n\n"...)
			if _, err := w.Write(buf); err != nil {
				return
			}
		case <-tick.C:
			if _, err := w.Write([]byte(": heartbeat\n\n")); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
