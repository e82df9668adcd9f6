package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency ranges: 1 µs to 5 minutes, 3 significant digits (0.1 % value error).
const (
	histMinUs  = 1
	histMaxUs  = 300_000_000
	histDigits = 3
)

// Latencies is a concurrency-safe HDR histogram of durations in microseconds. Values above the
// range are recorded at its top and counted, so a report never hides them.
type Latencies struct {
	mu       sync.Mutex
	h        *hdrhistogram.Histogram
	overflow int64
}

func NewLatencies() *Latencies {
	return &Latencies{h: hdrhistogram.New(histMinUs, histMaxUs, histDigits)}
}

// Record adds one latency. Negative durations (a clock step) count as 0 µs, recorded as 1.
func (l *Latencies) Record(d time.Duration) {
	us := d.Microseconds()
	if us < histMinUs {
		us = histMinUs
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if us > histMaxUs {
		us = histMaxUs
		l.overflow++
	}
	_ = l.h.RecordValue(us) // in range by construction
}

// Summary is what the JSON report carries for one histogram.
type Summary struct {
	Count    int64   `json:"count"`
	P50      int64   `json:"p50_us"`
	P99      int64   `json:"p99_us"`
	P999     int64   `json:"p999_us"`
	Max      int64   `json:"max_us"`
	Mean     float64 `json:"mean_us"`
	Overflow int64   `json:"overflow"`
}

func (l *Latencies) Summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Summary{
		Count:    l.h.TotalCount(),
		P50:      l.h.ValueAtQuantile(50),
		P99:      l.h.ValueAtQuantile(99),
		P999:     l.h.ValueAtQuantile(99.9),
		Max:      l.h.Max(),
		Mean:     l.h.Mean(),
		Overflow: l.overflow,
	}
}
