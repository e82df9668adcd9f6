package main

import "time"

// Schedule is an open-loop sending plan: record i (counted over all producers) is due at
// start + i/rate, whatever happened to the records before it. Latency counts from the due
// time, so a stalled broker or client shows up as latency of every record that was due
// while it stalled (no coordinated omission).
type Schedule struct {
	Start time.Time
	Rate  float64 // records per second over all producers; > 0
}

// Due is when record i is due. Computed from i, not by adding intervals, so no drift.
func (s Schedule) Due(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) * 1e9 / s.Rate))
}

// Count is how many records are due before end (records 0..Count-1).
func (s Schedule) Count(end time.Time) int64 {
	d := end.Sub(s.Start)
	if d <= 0 {
		return 0
	}
	n := int64(d.Seconds() * s.Rate)
	// Float rounding may put the n-th record's due time at or after end; keep Due(n-1) < end.
	for n > 0 && !s.Due(n-1).Before(end) {
		n--
	}
	for s.Due(n).Before(end) {
		n++
	}
	return n
}

// Stripe yields the indexes of producer p of n: p, p+n, p+2n, ...; producers share the
// schedule without sharing a counter.
func Stripe(p, n int, i int64) int64 { return int64(p) + i*int64(n) }
