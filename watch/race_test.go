//go:build race

package watch

// raceEnabled: the race detector slows allocation-heavy tests tenfold.
const raceEnabled = true
