package profile

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// Options shape a fleet's households. The shares are fractions of meters
// (0 to 1) chosen per meter by seed; the means are fleet means that
// individual households spread around.
type Options struct {
	// Location is the households' local time zone: their day (peaks,
	// weekends, daylight) follows it. Nil means UTC.
	Location *time.Location

	// MeanDailyKWh is the fleet mean of a household's electricity use per
	// day over a year (kWh); zero means 10, a European home. Households
	// spread from about half to four times it by their size.
	MeanDailyKWh float64
	// SolarShare is the share of electricity meters behind rooftop solar;
	// they also report the export register 1-0:2.8.0.
	SolarShare float64
	// ElectricHeatingShare is the share of electricity meters of homes
	// heated electrically, whose winter use is much higher.
	ElectricHeatingShare float64
	// CoolingShare is the share of electricity meters of homes with air
	// conditioning, used on hot afternoons.
	CoolingShare float64

	// MeanLitresPerPerson is the mean water use per person per day;
	// zero means 145 l.
	MeanLitresPerPerson float64
	// LeakShare is the share of water meters behind a leak: a small
	// continuous flow, day and night.
	LeakShare float64

	// MeanYearlyGasM3 is the fleet mean of a household's gas use per
	// year (heating, hot water, cooking); zero means 1,100 m³ (about
	// 11,500 kWh).
	MeanYearlyGasM3 float64

	// RolloverShare is the share of meters whose register starts a day
	// or two of consumption short of its width, so that it rolls over
	// early in a simulation.
	RolloverShare float64
	// RegisterMax, when positive, is the largest value every register
	// shows before rolling over to zero. Zero means the utility's usual
	// width: 999999.999 kWh for electricity, 99999.999 m³ for water
	// and gas.
	RegisterMax meter.Value
}

// DefaultOptions returns the options of a typical European fleet.
func DefaultOptions() Options {
	return Options{
		Location:             time.UTC,
		MeanDailyKWh:         10,
		SolarShare:           0.15,
		ElectricHeatingShare: 0.08,
		CoolingShare:         0.1,
		MeanLitresPerPerson:  145,
		LeakShare:            0.05,
		MeanYearlyGasM3:      1100,
	}
}

// Validate reports every problem of o.
func (o Options) Validate() error {
	var errs []error
	share := func(name string, v float64) {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v is not a share between 0 and 1", name, v))
		}
	}
	share("solar share", o.SolarShare)
	share("electric heating share", o.ElectricHeatingShare)
	share("cooling share", o.CoolingShare)
	share("leak share", o.LeakShare)
	share("rollover share", o.RolloverShare)
	mean := func(name string, v, max float64) {
		if !(v >= 0 && v <= max) {
			errs = append(errs, fmt.Errorf("%s %v is out of range (0 to %v)", name, v, max))
		}
	}
	mean("mean daily kWh", o.MeanDailyKWh, 1000)
	mean("mean litres per person", o.MeanLitresPerPerson, 5000)
	mean("mean yearly gas m3", o.MeanYearlyGasM3, 100000)
	if o.RegisterMax < 0 {
		errs = append(errs, fmt.Errorf("register max %v is negative", o.RegisterMax))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Location == nil {
		o.Location = d.Location
	}
	if o.MeanDailyKWh == 0 {
		o.MeanDailyKWh = d.MeanDailyKWh
	}
	if o.MeanLitresPerPerson == 0 {
		o.MeanLitresPerPerson = d.MeanLitresPerPerson
	}
	if o.MeanYearlyGasM3 == 0 {
		o.MeanYearlyGasM3 = d.MeanYearlyGasM3
	}
	return o
}

// Model is one simulated meter and the household behind it. It is not
// safe for concurrent use.
type Model struct {
	utility  meter.Utility
	channels []meter.Channel
	regs     int         // channels[:regs] are registers, the rest instantaneous
	modulus  meter.Value // register width: RegisterMax + 1
	start    [maxRegs]meter.Value
	cum      [maxRegs]int64 // consumption since the origin, in millionths
	lastMs   int64
	started  bool

	loc     *time.Location
	weather Weather
	mseed   uint64
	dayPCG  rand.PCG
	dayRand *rand.Rand
	noise   rand.PCG

	day    day
	minute int64 // minute index whose rates are cached
	rates  rates
	hh     household

	// Traits of the household, for tests and for the fleet's summary.
	traits Traits
}

// Traits are the per-meter characteristics a Model drew from its seed.
type Traits struct {
	Persons         int
	Solar           bool
	ElectricHeating bool
	Cooling         bool
	Leak            bool
	NearRollover    bool
}

const (
	maxRegs     = 2
	maxInstants = 3
	msPerMinute = int64(time.Minute / time.Millisecond)
)

// rates are one minute of a household: register rates in canonical units
// per hour (kW, m³/h) and instantaneous values in canonical units.
type rates struct {
	reg  [maxRegs]float64
	inst [maxInstants]float64
	// micro is reg as millionths of a unit per minute, the integrated
	// quantity.
	micro [maxRegs]int64
}

// day is the plan of one local calendar day of a household.
type day struct {
	startMs, endMs int64 // local midnight and the next, in Unix milliseconds
	num            int64 // civil day number of the local date (days since 1970-01-01)
	doy            int   // day of year, 0-based
	weekend        bool
	tmean          float64 // mean outdoor temperature
	factor         float64 // activity of the household this day
	sky            float64 // clearness of the sky, 0 to 1, for solar
	events         []event
	heating        bool
}

// event is a burst of use: an appliance, a shower, a flush, from minute
// from to minute to (exclusive) of the day, at rate (kW, l/min or m³/h).
type event struct {
	from, to int32
	rate     float32
}

// add appends an event of dur minutes starting at minute from, clipped to
// the day.
func (d *day) add(from, dur int, rate float64) {
	to := from + dur
	if from < 0 {
		from = 0
	}
	if to > 1500 {
		to = 1500
	}
	if to <= from || rate <= 0 {
		return
	}
	d.events = append(d.events, event{from: int32(from), to: int32(to), rate: float32(rate)})
}

// eventRate sums the events running at minute of day mod.
func (d *day) eventRate(mod int) float64 {
	m := int32(mod)
	total := 0.0
	for _, e := range d.events {
		if m >= e.from && m < e.to {
			total += float64(e.rate)
		}
	}
	return total
}

// temperature is the outdoor temperature at minute of day mod.
func (d *day) temperature(mod int) float64 { return d.tmean + diurnal(mod) }

// household is what differs between utilities.
type household interface {
	// plan fills the day-level parts of d (events, factor, heating) from r.
	plan(d *day, r *rand.Rand)
	// rate computes the minute at minute of day mod of d; u1 and u2 are
	// uniform noise in [0, 1) for that minute.
	rate(d *day, mod int, u1, u2 float64) rates
	// dailyUse is the household's typical daily use in Value units of its
	// primary register, to place the register start.
	dailyUse() float64
}

// New returns the model of the meter meterID of utility kind, in a fleet
// seeded with seed.
func New(kind meter.Utility, meterID string, seed uint64, opts Options) (*Model, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	mseed := MeterSeed(seed, meterID)
	m := &Model{
		utility: kind,
		loc:     opts.Location,
		weather: NewWeather(seed),
		mseed:   mseed,
		minute:  math.MinInt64,
	}
	m.dayRand = rand.New(&m.dayPCG)
	hr := rand.New(rand.NewPCG(mseed, keyHousehold))

	var max meter.Value
	switch kind {
	case meter.Electricity:
		e := newElectricity(hr, opts)
		m.hh = e
		m.channels = append(m.channels, "1-0:1.8.0")
		if e.solarKWp > 0 {
			m.channels = append(m.channels, "1-0:2.8.0")
		}
		m.regs = len(m.channels)
		m.channels = append(m.channels, "1-0:1.7.0", "1-0:32.7.0", "1-0:31.7.0")
		m.traits = Traits{Persons: e.persons, Solar: e.solarKWp > 0, ElectricHeating: e.heatK > 0, Cooling: e.coolK > 0}
		max = 999_999_999
	case meter.Water:
		w := newWater(hr, opts)
		m.hh = w
		m.channels = []meter.Channel{"8-0:1.0.0", "8-0:2.0.0"}
		m.regs = 1
		m.traits = Traits{Persons: w.persons, Leak: w.leak > 0}
		max = 99_999_999
	case meter.Gas:
		g := newGas(hr, opts)
		m.hh = g
		m.channels = []meter.Channel{"7-0:3.0.0", "7-0:43.0.0"}
		m.regs = 1
		m.traits = Traits{Persons: g.persons}
		max = 99_999_999
	default:
		return nil, fmt.Errorf("unknown utility %q", kind)
	}
	if opts.RegisterMax > 0 {
		max = opts.RegisterMax
	}
	m.modulus = max + 1

	// Where the dial stands when the simulation finds it: up to about
	// fifteen years of use, or a day or two short of rolling over.
	daily := m.hh.dailyUse()
	// The rollover draw is made whatever the share, so that the draws
	// after it do not depend on the option.
	if hr.Float64() < opts.RolloverShare {
		m.traits.NearRollover = true
		short := meter.Value(uniform(hr, 0.3, 2) * daily)
		m.start[0] = m.modulus - 1 - min(short, m.modulus-1)
	} else {
		m.start[0] = meter.Value(hr.Float64() * math.Min(float64(max), 15*365*daily))
	}
	if m.regs > 1 {
		m.start[1] = meter.Value(hr.Float64() * math.Min(float64(max), 5*365*daily))
	}
	return m, nil
}

// Utility is the utility the model meters.
func (m *Model) Utility() meter.Utility { return m.utility }

// Channels lists the channels of the readings Advance returns, in their
// order: registers first, then instantaneous values.
func (m *Model) Channels() []meter.Channel { return m.channels }

// Traits returns what the model drew for its household.
func (m *Model) Traits() Traits { return m.traits }

// RegisterMax is the largest value the registers show before rolling over.
func (m *Model) RegisterMax() meter.Value { return m.modulus - 1 }

// Consumed returns the consumption integrated into register i (0 is the
// primary register) since the first Advance, in Value units, without
// rollover: the register reads (start + Consumed) modulo its width.
func (m *Model) Consumed(i int) meter.Value { return meter.Value(m.cum[i] / 1000) }

// Advance integrates the household's use up to to and returns the
// readings of every channel at to. The first call only places the
// register (the meter's installation); a time before the last one given
// integrates nothing and reads the registers as they stand, with the
// instantaneous values at to.
func (m *Model) Advance(to time.Time) []meter.Reading {
	toMs := to.UnixMilli()
	if !m.started {
		m.started = true
		m.lastMs = toMs
	}
	for m.lastMs < toMs {
		idx := floorDiv(m.lastMs, msPerMinute)
		r := m.ratesAt(idx)
		begin := idx * msPerMinute
		end := min(begin+msPerMinute, toMs)
		for i := 0; i < m.regs; i++ {
			e := r.micro[i]
			if m.lastMs == begin && end == begin+msPerMinute {
				m.cum[i] += e
				continue
			}
			// The use in a part of a minute is the whole minute's
			// share, floored at both ends, so that any split of the
			// minute sums to the same total.
			m.cum[i] += e*(end-begin)/msPerMinute - e*(m.lastMs-begin)/msPerMinute
		}
		m.lastMs = end
	}

	r := m.ratesAt(floorDiv(toMs-1, msPerMinute))
	t := time.UnixMilli(toMs).UTC()
	out := make([]meter.Reading, len(m.channels))
	for i, ch := range m.channels {
		var v meter.Value
		if i < m.regs {
			v = (m.start[i] + meter.Value(m.cum[i]/1000)) % m.modulus
		} else {
			v = meter.Value(math.Round(r.inst[i-m.regs] * 1000))
		}
		out[i] = meter.Reading{Channel: ch, Time: t, Value: v}
	}
	return out
}

// ratesAt returns the rates of minute idx (Unix minutes), planning its day
// when needed.
func (m *Model) ratesAt(idx int64) rates {
	if idx == m.minute {
		return m.rates
	}
	ms := idx * msPerMinute
	if ms < m.day.startMs || ms >= m.day.endMs || m.day.endMs == 0 {
		m.planDay(ms)
	}
	mod := int((ms - m.day.startMs) / msPerMinute)
	m.noise.Seed(m.mseed^keyNoise, uint64(idx))
	u1, u2 := unit(m.noise.Uint64()), unit(m.noise.Uint64())
	r := m.hh.rate(&m.day, mod, u1, u2)
	for i := range r.reg {
		r.reg[i] = math.Max(0, r.reg[i])
		r.micro[i] = int64(math.Round(r.reg[i] * 1e6 / 60))
	}
	m.minute, m.rates = idx, r
	return r
}

// planDay plans the local day holding the instant ms.
func (m *Model) planDay(ms int64) {
	lt := time.UnixMilli(ms).In(m.loc)
	y, mo, dd := lt.Date()
	start := time.Date(y, mo, dd, 0, 0, 0, 0, m.loc)
	end := time.Date(y, mo, dd+1, 0, 0, 0, 0, m.loc)
	num := time.Date(y, mo, dd, 0, 0, 0, 0, time.UTC).Unix() / 86400
	wd := lt.Weekday()
	d := &m.day
	*d = day{
		startMs: start.UnixMilli(),
		endMs:   end.UnixMilli(),
		num:     num,
		doy:     lt.YearDay() - 1,
		weekend: wd == time.Saturday || wd == time.Sunday,
		events:  d.events[:0],
		factor:  1,
	}
	d.tmean = m.weather.DayMean(num, d.doy)
	d.heating = d.tmean < heatingSeason
	m.dayPCG.Seed(m.mseed^keyDay, uint64(num))
	m.hh.plan(d, m.dayRand)
}
