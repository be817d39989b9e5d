package profile

import (
	"math"
	"math/rand/v2"
)

// Gas heats the home and its water and cooks. Heating follows the
// outdoor temperature: the boiler burns in proportion to how far the
// temperature is below 15.5 °C during the heating schedule (with a night
// setback), and not at all on days warm enough for summer mode. Hot water
// (showers, taps) and cooking come as bursts all year, so that a summer
// day uses little but not nothing.

// Expected daily hot water and cooking use, in m³, for sizing heating.
const (
	showerM3  = 0.8 * 7 * 1.9 / 60
	gasTapM3  = 1.5 * 1.0 / 60
	cookingM3 = 0.2 + 2.0/7*0.5*0.2
)

type gas struct {
	persons  int
	heatK    float64 // m³/h per °C below 15.5 °C
	heatFrom int
	heatTo   int
	setback  float64
	boilerM3 float64 // the boiler's largest flow, m³/h
	yearly   float64 // target m³ a year
}

func newGas(r *rand.Rand, o Options) *gas {
	g := &gas{persons: pick(r, personsWeights) + 1}
	n := float64(g.persons)
	size := (0.8 + 0.1*n) / (0.8 + 0.1*2.26)
	g.yearly = o.MeanYearlyGasM3 * size * lognormal(r, 0.3)
	hotWater := 365 * (n*showerM3 + (3+2*n)*gasTapM3 + cookingM3)
	g.heatFrom = minuteBetween(r, 5.5, 7)
	g.heatTo = minuteBetween(r, 21.5, 23.5)
	g.setback = uniform(r, 0, 0.25)
	g.boilerM3 = uniform(r, 2.2, 3.2)
	g.heatK = math.Max(0.3*g.yearly, g.yearly-hotWater) / heatingDegreeHours(g.heatFrom, g.heatTo, g.setback)
	return g
}

func (g *gas) dailyUse() float64 { return g.yearly / 365 * 1000 }

func (g *gas) plan(d *day, r *rand.Rand) {
	d.factor = lognormal(r, 0.1)
	for p := 0; p < g.persons; p++ {
		showers := r.Float64() < 0.8
		start := minuteBetween(r, 6, 8.5)
		if r.Float64() < 0.35 {
			start = minuteBetween(r, 18.5, 22.5)
		}
		dur, flow := 5+r.IntN(5), uniform(r, 1.6, 2.2)
		if showers {
			d.add(start, dur, flow)
		}
	}
	for range poisson(r, 3+2*float64(g.persons)) {
		d.add(minuteFromShape(r, &wakingShape), 1+r.IntN(2), uniform(r, 0.8, 1.2))
	}
	if r.Float64() < 0.6 {
		d.add(minuteBetween(r, 17.5, 19.5), 30+r.IntN(21), uniform(r, 0.3, 0.7))
	}
	if d.weekend && r.Float64() < 0.5 {
		d.add(minuteBetween(r, 11.5, 12.5), 30+r.IntN(21), uniform(r, 0.3, 0.7))
	}
}

func (g *gas) rate(d *day, mod int, u1, _ float64) rates {
	flow := d.eventRate(mod)
	if d.heating {
		w := g.setback
		if mod >= g.heatFrom && mod < g.heatTo {
			w = 1
		}
		heat := w * g.heatK * d.factor * math.Max(0, heatingBase-d.temperature(mod)) * (1 + 0.15*(2*u1-1))
		flow += math.Min(g.boilerM3, heat)
	}
	var r rates
	r.reg[0] = flow
	r.inst[0] = flow
	return r
}
