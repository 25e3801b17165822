package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func maxOf(ds []time.Duration) time.Duration { return pct(ds, 100) }

// ms formats a duration in milliseconds, one decimal (two under 1ms).
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if math.Abs(v) < 1 {
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

// ratio formats a/b as "x1.23".
func ratio(a, b float64) string {
	if b == 0 {
		return "x-"
	}
	return fmt.Sprintf("x%.2f", a/b)
}
