package web

import (
	"net/http"
	"strconv"

	"github.com/xivo-resilience/resilience/internal/store"
)

// historyPage is how many audit entries a history page shows.
const historyPage = 50

// historyView is one page of the audit log, newest first.
type historyView struct {
	Entries []store.Entry
	// Before is the page's own cursor (0: the newest entries).
	Before uint64
	// Older is the cursor of the next page, 0 when this is the last.
	Older uint64
	Err   string
}

// historyShow serves GET /history?before=SEQ: the audit log, paged by
// sequence number.
func (s *Server) historyShow(w http.ResponseWriter, r *http.Request, v *visit) {
	var hv historyView
	if b := r.URL.Query().Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n == 0 {
			s.renderError(w, r, v, http.StatusBadRequest, "before: must be a sequence number above 0.")
			return
		}
		hv.Before = n
	}
	entries, err := s.opts.History.History(historyPage+1, hv.Before)
	if err != nil {
		s.log.Error("read history", "err", err)
		hv.Err = "The audit log cannot be read: " + err.Error()
	}
	if len(entries) > historyPage {
		entries = entries[:historyPage]
		hv.Older = entries[len(entries)-1].Seq
	}
	hv.Entries = entries
	s.render(w, http.StatusOK, "history", pageData{
		Title: "History", Nav: "history", User: v.userView(), CSRF: v.sess.csrf,
		Flash: s.sessions.popFlash(v.id), Body: hv,
	})
}
