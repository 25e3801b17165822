package store

import (
	"strings"
	"testing"
)

func TestStore_StateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.State(); err != nil || ok {
		t.Fatalf("fresh store: ok=%v err=%v, want no state", ok, err)
	}
	want := State{Desired: "active", Status: "activating", Epoch: 7}
	if _, err := s.Write(&want, Entry{Actor: "admin", Action: "start", Result: "begun"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok, err := s.State()
	if err != nil || !ok {
		t.Fatalf("reopened: ok=%v err=%v", ok, err)
	}
	if got.Desired != want.Desired || got.Status != want.Status || got.Epoch != want.Epoch {
		t.Errorf("state = %+v, want %+v", got, want)
	}
	h, err := s.History(10, 0)
	if err != nil || len(h) != 1 || h[0].Seq != 1 || h[0].Actor != "admin" || h[0].Time.IsZero() {
		t.Fatalf("history = %+v, %v", h, err)
	}
}

func TestStore_SecondOpenRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v, want a lock error", err)
	}
}

func TestStore_HistoryPagingAndPruning(t *testing.T) {
	s, err := Open(t.TempDir(), Options{MaxEntries: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 8; i++ {
		if _, err := s.Write(nil, Entry{Action: "start"}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		limit  int
		before uint64
		want   []uint64
	}{
		{"newest first", 3, 0, []uint64{8, 7, 6}},
		{"next page", 3, 6, []uint64{5, 4}},
		{"pruned beyond max", 10, 0, []uint64{8, 7, 6, 5, 4}},
		{"before past the end", 2, 100, []uint64{8, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := s.History(tt.limit, tt.before)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range h {
				got = append(got, e.Seq)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("seqs = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("seqs = %v, want %v", got, tt.want)
				}
			}
		})
	}
}
