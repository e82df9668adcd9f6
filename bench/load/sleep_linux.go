package main

import (
	"syscall"
	"time"
)

// sleepUntilDue waits d. Go's timers wake up to about 1 ms late for sub-millisecond waits
// (measured here: a 50 µs time.Sleep returned after ~1.03 ms), which at 10k records/s would
// make the generator itself the latency; nanosleep(2) holds the thread instead and wakes
// within the kernel's timer slack (~50 µs: 35-60 µs late measured on this machine).
func sleepUntilDue(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
