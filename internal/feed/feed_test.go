package feed

import (
	"fmt"
	"testing"
)

func TestFeed_SlowReaderKeepsTheNewest(t *testing.T) {
	var f Feed
	if f.Encoded() != nil {
		t.Fatal("zero feed has a snapshot")
	}
	f.Publish([]byte("0"))
	ch, cancel := f.Subscribe()
	defer cancel()
	for i := 1; i <= 3*Buffer; i++ {
		f.Publish(fmt.Appendf(nil, "%d", i))
	}
	var last string
	n := 0
	for len(ch) > 0 {
		last = string(<-ch)
		n++
	}
	if n != Buffer || last != fmt.Sprint(3*Buffer) {
		t.Fatalf("read %d snapshots ending with %q, want %d ending with the newest", n, last, Buffer)
	}
	if string(f.Encoded()) != fmt.Sprint(3*Buffer) {
		t.Fatalf("current %q", f.Encoded())
	}
	cancel()
	f.Publish([]byte("after"))
	if len(ch) != 0 {
		t.Fatal("cancelled subscriber still fed")
	}
}
