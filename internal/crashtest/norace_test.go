//go:build !race

package crashtest

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = false
