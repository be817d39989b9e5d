package profile

import (
	"math"
	"math/rand/v2"
)

// Activity shapes: the household's use above its base load through a
// weekday and a weekend day, in kW per unit of the household's activity,
// one value per hour (the value holds at the middle of the hour and is
// interpolated in between). Weekdays have a morning peak (7–9) and a
// higher evening peak (17–22); weekends get up later and stay home.
var (
	weekdayShape = [24]float64{
		0.20, 0.12, 0.08, 0.08, 0.08, 0.12, 0.45, 0.95, 0.85, 0.45, 0.35, 0.40,
		0.50, 0.42, 0.35, 0.38, 0.55, 0.95, 1.35, 1.50, 1.40, 1.15, 0.75, 0.40,
	}
	weekendShape = [24]float64{
		0.30, 0.18, 0.10, 0.08, 0.08, 0.08, 0.15, 0.35, 0.75, 1.00, 1.05, 1.00,
		1.00, 0.85, 0.70, 0.70, 0.80, 1.05, 1.35, 1.45, 1.35, 1.15, 0.85, 0.50,
	}
	shapeWeekSum = (5*sum24(&weekdayShape) + 2*sum24(&weekendShape)) / 7
)

func sum24(s *[24]float64) float64 {
	t := 0.0
	for _, v := range s {
		t += v
	}
	return t
}

// shapeAt interpolates shape at minute of day mod.
func shapeAt(s *[24]float64, mod int) float64 {
	h := float64(mod)/60 - 0.5
	i := int(math.Floor(h))
	f := h - float64(i)
	a := s[(i+24)%24]
	b := s[(i+25)%24]
	return a + (b-a)*f
}

// Expected energy of the appliance events, in kWh per event, used to size
// the household's activity so that its daily total meets its target.
const (
	kettleKWh     = 2.5 * 3 / 60
	ovenKWh       = 2.0 * 52.5 / 60
	washKWh       = 2.0*15/60 + 0.3*55/60
	dishKWh       = 1.8*20/60 + 0.15*70/60
	ovenWeekday   = 0.3
	ovenWeekend   = 0.5
	dishwasherUse = 0.6 // chance a dishwasher owner runs it on a day
)

// electricity is one home's electricity use: a base load (fridge,
// standby), activity following the daily shapes, appliance events (kettle,
// oven, washing machine, dishwasher), optional electric heating and air
// conditioning driven by the outdoor temperature, and optional rooftop
// solar.
type electricity struct {
	persons     int
	target      float64 // mean daily kWh without heating
	base        float64 // kW, standby and the fridge's average
	fridgeAmp   float64 // kW of the fridge compressor when it runs
	fridgePhase int
	activity    float64 // kW per unit of shape
	kettles     float64 // mean kettle boils per day
	washProb    float64
	dishwasher  bool
	heatK       float64 // kW per °C below 15.5 °C; 0 without electric heating
	heatFrom    int     // minute of day the heating schedule starts
	heatTo      int
	setback     float64 // share of heating at night
	coolK       float64 // kW per °C above 22 °C; 0 without air conditioning
	solarKWp    float64 // 0 without solar
	vOffset     float64 // the home's place on the feeder, in V
}

// personsFactor scales use with the number of persons (1 to 5).
var (
	personsWeights = []float64{0.30, 0.33, 0.15, 0.15, 0.07}
	personsFactor  = []float64{0.60, 0.95, 1.15, 1.35, 1.55}
	personsMean    = func() float64 {
		m := 0.0
		for i, w := range personsWeights {
			m += w * personsFactor[i]
		}
		return m
	}()
)

// heatingShareOfUse is the mean of an electrically heated home's heating
// use relative to its other use; the fleet's targets are scaled down by
// it so that the fleet mean stays at MeanDailyKWh.
const heatingShareOfUse = 0.9

func newElectricity(r *rand.Rand, o Options) *electricity {
	e := &electricity{}
	p := pick(r, personsWeights)
	e.persons = p + 1
	// Away days (3%, at a sixth of the activity) and heated homes would
	// move the fleet mean off MeanDailyKWh: the targets make up for both.
	norm := (1 + o.ElectricHeatingShare*heatingShareOfUse) * 0.975
	e.target = o.MeanDailyKWh / norm * personsFactor[p] / personsMean * lognormal(r, 0.3)
	e.target = clamp(e.target, 0.45*o.MeanDailyKWh, 4*o.MeanDailyKWh)

	e.base = clamp(0.06+0.03*float64(e.persons)+0.02*r.NormFloat64(), 0.08, 0.30)
	e.base = math.Min(e.base, 0.45*e.target/24)
	e.fridgeAmp = uniform(r, 0.06, 0.12)
	e.fridgePhase = r.IntN(40)
	e.kettles = 1.0 + 0.6*float64(e.persons)
	e.washProb = math.Min(0.8, 0.1+0.12*float64(e.persons))
	e.dishwasher = r.Float64() < 0.6

	events := e.kettles*kettleKWh + (5*ovenWeekday+2*ovenWeekend)/7*ovenKWh + e.washProb*washKWh
	if e.dishwasher {
		events += dishwasherUse * dishKWh
	}
	e.activity = math.Max(0.15*e.target, e.target-24*e.base-events) / shapeWeekSum

	e.heatFrom = minuteBetween(r, 5.5, 7)
	e.heatTo = minuteBetween(r, 22, 23.5)
	e.setback = uniform(r, 0.2, 0.5)
	if r.Float64() < o.ElectricHeatingShare {
		yearly := 365 * uniform(r, 0.6, 1.2) * e.target
		e.heatK = yearly / heatingDegreeHours(e.heatFrom, e.heatTo, e.setback)
	}
	coolK := uniform(r, 0.15, 0.35)
	if r.Float64() < o.CoolingShare {
		e.coolK = coolK
	}
	kWp := uniform(r, 2.5, 6)
	if r.Float64() < o.SolarShare {
		e.solarKWp = kWp
	}
	e.vOffset = uniform(r, -2, 2)
	return e
}

func (e *electricity) dailyUse() float64 { return e.target * 1000 }

func (e *electricity) plan(d *day, r *rand.Rand) {
	shape := &weekdayShape
	if d.weekend {
		shape = &weekendShape
	}
	d.factor = lognormal(r, 0.2)
	away := r.Float64() < 0.03
	// Every draw is made whether it is used or not, so that one day's
	// plan does not shift the next one's.
	kettles := poisson(r, e.kettles*d.factor)
	for i := 0; i < kettles; i++ {
		d.add(minuteFromShape(r, shape), 2+r.IntN(3), uniform(r, 2.0, 3.0))
	}
	ovenP := ovenWeekday
	if d.weekend {
		ovenP = ovenWeekend
	}
	if r.Float64() < ovenP {
		start := minuteBetween(r, 17.5, 19.5)
		if d.weekend && r.Float64() < 0.5 {
			start = minuteBetween(r, 11.5, 12.5)
		}
		d.add(start, 30+r.IntN(46), uniform(r, 1.6, 2.4))
	}
	if r.Float64() < e.washProb {
		start := minuteBetween(r, 8, 20)
		d.add(start, 15, 2.0)
		d.add(start+15, 55, 0.3)
	}
	if r.Float64() < dishwasherUse && e.dishwasher {
		start := minuteBetween(r, 19.5, 22.5)
		if r.Float64() < 0.2 {
			start = minuteBetween(r, 13, 15)
		}
		d.add(start, 20, 1.8)
		d.add(start+20, 70, 0.15)
	}
	// Clearness of the sky for solar, 0.15 (overcast) to 1.
	d.sky = 0.15 + 0.85*math.Pow(r.Float64(), 0.8)
	if away {
		d.factor = 0.15
		d.events = d.events[:0]
	}
}

// seasonAngle is the angle of day of year doy from the spring equinox.
func seasonAngle(doy int) float64 { return 2 * math.Pi * float64(doy-80) / 365.25 }

func (e *electricity) rate(d *day, mod int, u1, u2 float64) rates {
	shape := &weekdayShape
	if d.weekend {
		shape = &weekendShape
	}
	// Winter evenings are darker: a little more light and time indoors.
	season := 1 + 0.15*math.Cos(2*math.Pi*float64(d.doy-15)/365.25)
	load := e.base - e.fridgeAmp*15/40
	if (mod+e.fridgePhase)%40 < 15 {
		load += e.fridgeAmp
	}
	load += e.activity * shapeAt(shape, mod) * season * d.factor * (1 + 0.35*(2*u1-1))
	load += d.eventRate(mod)

	if e.heatK > 0 && d.heating {
		w := e.setback
		if mod >= e.heatFrom && mod < e.heatTo {
			w = 1
		}
		load += math.Min(9, w*e.heatK*math.Max(0, heatingBase-d.temperature(mod)))
	}
	if e.coolK > 0 && mod >= 12*60 && mod < 22*60 {
		load += math.Min(3, e.coolK*math.Max(0, d.temperature(mod)-22))
	}

	pv := 0.0
	if e.solarKWp > 0 {
		pv = e.solar(d, mod, u2)
	}
	net := load - pv
	v := 230 + e.vOffset + 2*math.Cos(2*math.Pi*(float64(mod)/60-4)/24) -
		0.5*math.Min(load, 6) + 0.4*pv + 1.2*(u2-0.5)
	v = clamp(v, 224.5, 235.5)

	var r rates
	r.reg[0] = math.Max(0, net)
	if e.solarKWp > 0 {
		r.reg[1] = math.Max(0, -net)
	}
	r.inst = [maxInstants]float64{math.Max(0, net), v, math.Abs(net) * 1000 / v}
	return r
}

// solar is the rooftop production at minute mod: a bell over the daylight
// hours whose length and height follow the season, scaled by the day's
// clearness and flickering with passing clouds.
func (e *electricity) solar(d *day, mod int, u float64) float64 {
	s := math.Sin(seasonAngle(d.doy))
	length := 12 + 4*s
	rise := 12.75 - length/2
	h := float64(mod) / 60
	if h <= rise || h >= rise+length {
		return 0
	}
	c := d.sky
	bell := math.Sin(math.Pi * (h - rise) / length)
	peak := 0.575 + 0.175*s
	return e.solarKWp * peak * c * bell * bell * (1 - 0.25*(1-c)*u)
}
