package profile

import (
	"math"
	"sync"
)

// Weather is the outdoor temperature of the simulated region: one
// temperature series per fleet seed, shared by every household, because
// neighbours have the same winter. It is a sinusoidal seasonal mean
// (about 2 °C late in January, 19 °C late in July, a central European
// climate), a daily swing of ±4 °C peaking at 15:00 local time, and a
// day-to-day anomaly of a few degrees made of multi-day spells and daily
// noise, all deterministic by seed.
type Weather struct {
	seed uint64
}

// NewWeather returns the weather of the fleet seeded with seed.
func NewWeather(seed uint64) Weather { return Weather{seed: seed} }

const (
	// heatingBase is the outdoor temperature below which homes heat
	// (the 15.5 °C base of heating degree days).
	heatingBase = 15.5
	// heatingSeason is the day-mean temperature above which heating
	// stays off for the whole day (boilers in summer mode).
	heatingSeason = 15.0
	// dailySwing is half the peak-to-peak daily temperature swing.
	dailySwing = 4.0
	// spellDays is the length of a weather spell.
	spellDays = 5
)

// seasonalMean is the climatological day-mean temperature of day of year
// doy (0-based).
func seasonalMean(doy int) float64 {
	return 10.5 - 8.5*math.Cos(2*math.Pi*float64(doy-20)/365.25)
}

// diurnal is the daily swing at minute of day mod.
func diurnal(mod int) float64 {
	return dailySwing * diurnalTable[mod%len(diurnalTable)]
}

// diurnalTable holds cos(2π(h−15)/24) for each minute of a day.
var diurnalTable = func() [1440]float64 {
	var t [1440]float64
	for i := range t {
		t[i] = math.Cos(2 * math.Pi * (float64(i)/60 - 15) / 24)
	}
	return t
}()

// Anomaly is the departure of civil day dayNum (days since 1970-01-01)
// from the seasonal mean, in °C: a spell term interpolated between knots
// every spellDays days, plus daily noise.
func (w Weather) Anomaly(dayNum int64) float64 {
	k := floorDiv(dayNum, spellDays)
	f := float64(dayNum-k*spellDays) / spellDays
	a := normalAt(w.seed^keySpell, uint64(k))
	b := normalAt(w.seed^keySpell, uint64(k+1))
	return 2.5*(a+(b-a)*f) + 1.5*normalAt(w.seed^keyWeather, uint64(dayNum))
}

// DayMean is the mean temperature of civil day dayNum, which is day of
// year doy.
func (w Weather) DayMean(dayNum int64, doy int) float64 {
	return seasonalMean(doy) + w.Anomaly(dayNum)
}

// degreeHours holds, for each hour of the day, the heating degree-hours of
// a climatological year at that hour (Σ over heating-season days of
// max(0, 15.5 − T)). Households use it to size their heating so that a
// year's heating energy matches their target; it ignores the anomalies,
// which only spread the result.
var degreeHours = sync.OnceValue(func() [24]float64 {
	var dh [24]float64
	for doy := 0; doy < 365; doy++ {
		m := seasonalMean(doy)
		if m >= heatingSeason {
			continue
		}
		for h := 0; h < 24; h++ {
			dh[h] += math.Max(0, heatingBase-(m+diurnal(h*60+30)))
		}
	}
	return dh
})

// heatingDegreeHours sums degreeHours weighted by the share of full
// heating a schedule gives each hour: full from fromMin to toMin minutes
// of the day, setback outside.
func heatingDegreeHours(fromMin, toMin int, setback float64) float64 {
	dh := degreeHours()
	total := 0.0
	for h := 0; h < 24; h++ {
		w := setback
		if m := h*60 + 30; m >= fromMin && m < toMin {
			w = 1
		}
		total += w * dh[h]
	}
	return total
}
