package fleet

import "time"

// simClock maps real time to simulated time: the simulation starts at
// simStart when the run starts at realStart and runs speed times faster
// than real time, but never ahead of the wall clock (readings from the
// future would be refused by the server). Once it catches up with the
// wall clock it runs at real time.
type simClock struct {
	realStart time.Time
	simStart  time.Time
	speed     float64
}

// now returns the simulated time at real time real.
func (c simClock) now(real time.Time) time.Time {
	s := c.simStart.Add(time.Duration(float64(real.Sub(c.realStart)) * c.speed))
	if s.After(real) {
		return real
	}
	return s
}

// realAt returns the real time at which the simulated clock reaches sim.
func (c simClock) realAt(sim time.Time) time.Time {
	r := c.realStart.Add(time.Duration(float64(sim.Sub(c.simStart)) / c.speed))
	if sim.After(r) {
		return sim
	}
	return r
}
