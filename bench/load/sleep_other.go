//go:build !linux

package main

import "time"

// sleepUntilDue waits d (Go's timer: about 1 ms granularity for short waits; see sleep_linux.go).
func sleepUntilDue(d time.Duration) { time.Sleep(d) }
