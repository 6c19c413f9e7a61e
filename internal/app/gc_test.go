package app

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGCLeavesOperatorSettingsAlone(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	tuneGC(env(map[string]string{"GOGC": "50"}))
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("with GOGC set, GC percent became %d", p)
	}
	tuneGC(env(map[string]string{"GOMEMLIMIT": "1GiB"}))
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT set, the memory limit became %d", l)
	}
	tuneGC(env(nil))
	if p := debug.SetGCPercent(100); p != serviceGOGC {
		t.Fatalf("GC percent %d, want %d", p, serviceGOGC)
	}
	if l := debug.SetMemoryLimit(-1); l != serviceMemLimit {
		t.Fatalf("memory limit %d, want %d", l, serviceMemLimit)
	}
}
