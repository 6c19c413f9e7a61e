package app

import (
	"runtime/debug"
)

// Garbage-collector settings for the worker, used unless the operator sets
// Go's own GOGC or GOMEMLIMIT. Ingest keeps Go's defaults: under a burst of
// batches its heap is mostly requests in flight, and a larger GOGC would
// take it near the 100 MiB the services are held to for little CPU (its
// cost per event is below nats-server's).
const (
	// serviceGOGC halves the collections of Go's default (100): measured
	// on the worker with `patchbay bench -rows worker` (one run each, on
	// a shared machine), GOGC 400 cut its CPU per event from 257 to
	// 195 µs for 11 MiB more RSS; 200 takes part of that at less memory.
	serviceGOGC = 200
	// serviceMemLimit is a soft limit: near it the collector runs as often
	// as Go's default would, so the larger GOGC never lets a process grow
	// past the 100 MiB the services are held to.
	serviceMemLimit = 80 << 20
)

// tuneGC applies serviceGOGC and serviceMemLimit where getenv (os.Getenv)
// has no GOGC and no GOMEMLIMIT of the operator's.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(serviceGOGC)
	debug.SetMemoryLimit(serviceMemLimit)
}
