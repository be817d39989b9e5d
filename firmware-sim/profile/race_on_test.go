//go:build race

package profile

// raceEnabled scales the statistical tests down under the race detector,
// which makes this arithmetic-heavy code some 25 times slower.
const raceEnabled = true
