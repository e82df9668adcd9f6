package main

import (
	"testing"
	"time"
)

func TestScheduleDueIsOpenLoop(t *testing.T) {
	start := time.Unix(1000, 0)
	s := Schedule{Start: start, Rate: 10_000}
	for _, tc := range []struct {
		i    int64
		want time.Duration
	}{{0, 0}, {1, 100 * time.Microsecond}, {10_000, time.Second}, {123_456_789, 123_456_789 * 100 * time.Microsecond}} {
		if got := s.Due(tc.i).Sub(start); got != tc.want {
			t.Errorf("Due(%d) = start+%v, want start+%v", tc.i, got, tc.want)
		}
	}
	// No drift: the due time of a far record does not depend on the ones before it.
	s3 := Schedule{Start: start, Rate: 3}
	if got := s3.Due(3_000_000).Sub(start); got != 1_000_000*time.Second {
		t.Errorf("Due(3e6) at rate 3 = %v, want 1e6 s", got)
	}
}

func TestScheduleCount(t *testing.T) {
	start := time.Unix(0, 0)
	for _, rate := range []float64{1, 3, 1000, 7919, 50_000} {
		s := Schedule{Start: start, Rate: rate}
		for _, d := range []time.Duration{0, time.Millisecond, 333 * time.Millisecond, time.Second, 2500 * time.Millisecond} {
			end := start.Add(d)
			n := s.Count(end)
			if n > 0 && !s.Due(n-1).Before(end) {
				t.Errorf("rate %v, %v: record %d due %v, not before end", rate, d, n-1, s.Due(n-1).Sub(start))
			}
			if s.Due(n).Before(end) {
				t.Errorf("rate %v, %v: Count %d misses record %d due %v", rate, d, n, n, s.Due(n).Sub(start))
			}
		}
	}
	if n := (Schedule{Start: start, Rate: 1000}).Count(start.Add(-time.Second)); n != 0 {
		t.Errorf("Count before start = %d", n)
	}
}

func TestStripesCoverTheScheduleOnce(t *testing.T) {
	const producers, total = 4, 1000
	seen := make([]int, total)
	for p := 0; p < producers; p++ {
		for k := int64(0); ; k++ {
			i := Stripe(p, producers, k)
			if i >= total {
				break
			}
			seen[i]++
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("record %d sent by %d producers", i, n)
		}
	}
}

func TestLatenciesPercentilesInMicroseconds(t *testing.T) {
	l := NewLatencies()
	// 1..10000 µs once each: p50 ≈ 5000, p99 ≈ 9900, p99.9 ≈ 9990, max 10000 (3 digits).
	for us := 1; us <= 10_000; us++ {
		l.Record(time.Duration(us) * time.Microsecond)
	}
	s := l.Summary()
	near := func(name string, got, want int64) {
		if d := got - want; d < -want/500-1 || d > want/500+1 {
			t.Errorf("%s = %d µs, want %d ± 0.2 %%", name, got, want)
		}
	}
	if s.Count != 10_000 {
		t.Errorf("count %d", s.Count)
	}
	near("p50", s.P50, 5000)
	near("p99", s.P99, 9900)
	near("p99.9", s.P999, 9990)
	near("max", s.Max, 10_000)
	if s.Overflow != 0 {
		t.Errorf("overflow %d", s.Overflow)
	}
}

func TestLatenciesClampAndCountOverflow(t *testing.T) {
	l := NewLatencies()
	l.Record(-time.Second)   // a clock step: recorded as the minimum
	l.Record(10 * time.Hour) // beyond the range: recorded at the top, counted
	s := l.Summary()
	if s.Count != 2 || s.Overflow != 1 {
		t.Fatalf("count %d overflow %d, want 2 and 1", s.Count, s.Overflow)
	}
	if s.Max < histMaxUs*999/1000 {
		t.Errorf("max %d µs, want about %d", s.Max, histMaxUs)
	}
	if s.P50 > 1 {
		t.Errorf("p50 %d µs, want the clamped minimum 1", s.P50)
	}
}

// A stalled broker must show up as latency of every record due during the stall: the
// tail comes from the due time, not from when the client got to send.
func TestStallIsCountedFromDueTime(t *testing.T) {
	l := NewLatencies()
	s := Schedule{Start: time.Unix(0, 0), Rate: 1000}
	stallEnd := s.Start.Add(100 * time.Millisecond) // nothing answered for the first 100 ms
	for i := int64(0); i < 1000; i++ {
		due := s.Due(i)
		ack := due.Add(200 * time.Microsecond)
		if ack.Before(stallEnd) {
			ack = stallEnd
		}
		l.Record(ack.Sub(due))
	}
	sum := l.Summary()
	if sum.P99 < 90_000 || sum.Max < 99_000 {
		t.Errorf("p99 %d µs max %d µs: the 100 ms stall is hidden", sum.P99, sum.Max)
	}
	if sum.P50 > 250 {
		t.Errorf("p50 %d µs, want ≈ 200", sum.P50)
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags([]string{"-acks", "1", "-rate", "50000", "-producers", "4", "-compression", "lz4"})
	if err != nil {
		t.Fatal(err)
	}
	if idem, _ := c.idempotent(); idem {
		t.Error("acks=1 is not idempotent by default")
	}
	for _, bad := range [][]string{{"-acks", "2"}, {"-size", "8"}, {"-compression", "brotli"},
		{"-acks", "1", "-idempotent", "true"}, {"-producers", "0"}, {"-rate", "-1"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
