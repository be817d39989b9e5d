package profile

import (
	"math"
	"math/rand/v2"
)

// Water use happens in bursts: showers in the morning and evening,
// toilet flushes (a cistern refills in about a minute), taps, the washing
// machine and dishwasher filling, a bath now and then, the garden on
// summer evenings. Between bursts the flow is zero, unless the home has
// a leak: a small flow that never stops, which is how leaks are found at
// night.

// waterWeights are the chances of a household of 1 to 6 persons.
var waterWeights = []float64{0.28, 0.34, 0.15, 0.14, 0.06, 0.03}

// wakingShape weights the hours of toilet and tap use.
var wakingShape = [24]float64{
	0.05, 0.03, 0.02, 0.02, 0.03, 0.2, 0.9, 1.4, 1.2, 0.8, 0.6, 0.6,
	0.8, 0.7, 0.6, 0.6, 0.7, 0.9, 1.1, 1.2, 1.1, 0.9, 0.7, 0.3,
}

// litresPerPersonBase is the mean daily use per person of the event mix
// below before scaling; households scale their flows by
// MeanLitresPerPerson over it.
const litresPerPersonBase = 124.0

type water struct {
	persons    int
	scale      float64 // flows scale: the fleet mean and this home's habits
	leak       float64 // l/min, 0 without a leak
	dishwasher bool
	garden     bool
}

func newWater(r *rand.Rand, o Options) *water {
	w := &water{persons: pick(r, waterWeights) + 1}
	w.scale = o.MeanLitresPerPerson / litresPerPersonBase * lognormal(r, 0.25)
	leak := uniform(r, 3, 30) / 60 // 3 to 30 l/h
	if r.Float64() < o.LeakShare {
		w.leak = leak
	}
	w.dishwasher = r.Float64() < 0.5
	w.garden = r.Float64() < 0.3
	return w
}

func (w *water) dailyUse() float64 {
	return float64(w.persons)*litresPerPersonBase*w.scale + w.leak*1440
}

func (w *water) plan(d *day, r *rand.Rand) {
	d.factor = lognormal(r, 0.15)
	n := float64(w.persons)
	s := w.scale * d.factor
	for p := 0; p < w.persons; p++ {
		// A shower, mostly in the morning.
		showers := r.Float64() < 0.8
		var start int
		switch {
		case r.Float64() < 0.35:
			start = minuteBetween(r, 18.5, 22.5)
		case d.weekend:
			start = minuteBetween(r, 7.5, 10.5)
		default:
			start = minuteBetween(r, 6, 8.5)
		}
		dur, flow := 5+r.IntN(5), uniform(r, 7, 9)
		if showers {
			d.add(start, dur, flow*s)
		}
		if r.Float64() < 0.04 {
			d.add(minuteBetween(r, 19, 21), 10, 12*s)
		}
		// Toilets by day, and sometimes one at night.
		for range poisson(r, 4.5) {
			d.add(minuteFromShape(r, &wakingShape), 1, uniform(r, 6, 9))
		}
		night := minuteBetween(r, 0, 5)
		if r.Float64() < 0.25 {
			d.add(night, 1, uniform(r, 6, 9))
		}
	}
	for range poisson(r, 3+5*n) {
		d.add(minuteFromShape(r, &wakingShape), 1, uniform(r, 1.5, 5)*s)
	}
	for range poisson(r, 2) { // cooking and cleaning
		d.add(minuteFromShape(r, &wakingShape), 2, 4*s)
	}
	if r.Float64() < math.Min(0.85, 0.14*n) { // laundry: four fills
		start := minuteBetween(r, 8, 20)
		for i := range 4 {
			d.add(start+20*i, 1, 13)
		}
	}
	if r.Float64() < 0.5 && w.dishwasher {
		start := minuteBetween(r, 19.5, 22.5)
		for i := range 3 {
			d.add(start+30*i, 1, 4)
		}
	}
	if w.garden && d.doy >= 140 && d.doy < 250 && d.tmean > 16 && r.Float64() < 0.35 {
		d.add(minuteBetween(r, 19, 21), 15+r.IntN(16), 12)
	}
}

func (w *water) rate(d *day, mod int, _, _ float64) rates {
	lpm := d.eventRate(mod) + w.leak
	var r rates
	r.reg[0] = lpm * 0.06 // m³/h
	r.inst[0] = r.reg[0]
	return r
}
