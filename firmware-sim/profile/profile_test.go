package profile

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

var (
	winter = time.Date(2025, 1, 13, 0, 0, 0, 0, time.UTC) // a Monday
	summer = time.Date(2025, 7, 14, 0, 0, 0, 0, time.UTC) // a Monday
)

// scaled returns n, or a fifth of it (at least min) under the race
// detector.
func scaled(n, min int) int {
	if raceEnabled {
		return max(min, n/5)
	}
	return n
}

func newModel(t testing.TB, u meter.Utility, id string, seed uint64, o Options) *Model {
	t.Helper()
	m, err := New(u, id, seed, o)
	require.NoError(t, err)
	return m
}

// dailyTotals advances meters of utility u from start through days days
// and returns every meter-day's consumption of the primary register, in
// canonical units.
func dailyTotals(t *testing.T, u meter.Utility, meters, days int, start time.Time, o Options) []float64 {
	t.Helper()
	var out []float64
	for i := range meters {
		m := newModel(t, u, fmt.Sprintf("%s-%04d", u, i), 1, o)
		m.Advance(start)
		for d := range days {
			before := m.Consumed(0)
			m.Advance(start.AddDate(0, 0, d+1))
			out = append(out, (m.Consumed(0) - before).Float())
		}
	}
	return out
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func TestDailyTotalsArePlausible(t *testing.T) {
	cases := []struct {
		name       string
		utility    meter.Utility
		start      time.Time
		min, max   float64 // every meter-day
		p5, p95    float64 // bounds of the fleet's 5th and 95th percentiles
		mlo, mhi   float64 // bounds of the fleet mean
		meterCount int
	}{
		// kWh a day: about 5 to 40, mean near 10, higher in winter.
		{"electricity winter", meter.Electricity, winter, 0.5, 120, 2.5, 40, 9, 14, 150},
		{"electricity summer", meter.Electricity, summer, 0, 60, 0.5, 30, 6, 11, 150},
		// m³ a day: 150 to 1,200 litres by household size.
		{"water winter", meter.Water, winter, 0.02, 3, 0.08, 1.2, 0.25, 0.45, 150},
		{"water summer", meter.Water, summer, 0.02, 3, 0.08, 1.2, 0.25, 0.5, 150},
		// m³ a day: heating in winter, hot water and cooking in summer.
		{"gas winter", meter.Gas, winter, 0.5, 30, 1.5, 15, 4, 9, 100},
		{"gas summer", meter.Gas, summer, 0, 5, 0.1, 2.5, 0.5, 1.5, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := dailyTotals(t, c.utility, scaled(c.meterCount, 40), 7, c.start, DefaultOptions())
			lo, hi := slices.Min(d), slices.Max(d)
			p5, p95, m := percentile(d, 0.05), percentile(d, 0.95), mean(d)
			t.Logf("min %.2f p5 %.2f mean %.2f p95 %.2f max %.2f", lo, p5, m, p95, hi)
			assert.GreaterOrEqual(t, lo, c.min)
			assert.LessOrEqual(t, hi, c.max)
			assert.GreaterOrEqual(t, p5, c.p5)
			assert.LessOrEqual(t, p95, c.p95)
			assert.GreaterOrEqual(t, m, c.mlo)
			assert.LessOrEqual(t, m, c.mhi)
		})
	}
}

func TestWaterScalesWithHouseholdSize(t *testing.T) {
	byPersons := map[int][]float64{}
	for i := range scaled(200, 60) {
		m := newModel(t, meter.Water, fmt.Sprintf("W-%d", i), 3, Options{})
		m.Advance(winter)
		m.Advance(winter.AddDate(0, 0, 7))
		byPersons[m.Traits().Persons] = append(byPersons[m.Traits().Persons], m.Consumed(0).Float()/7*1000)
	}
	one, four := mean(byPersons[1]), mean(byPersons[4])
	t.Logf("litres a day: 1 person %.0f, 4 persons %.0f", one, four)
	assert.InDelta(t, 150, one, 60)
	assert.InDelta(t, 580, four, 200)
}

func TestGasWinterFarAboveSummer(t *testing.T) {
	w := mean(dailyTotals(t, meter.Gas, scaled(60, 20), 7, winter, DefaultOptions()))
	s := mean(dailyTotals(t, meter.Gas, scaled(60, 20), 7, summer, DefaultOptions()))
	t.Logf("m³ a day: winter %.2f, summer %.2f", w, s)
	assert.Greater(t, w, 4*s)
	assert.Greater(t, s, 0.2, "summer keeps hot water and cooking")
}

func TestGasYearlyTotal(t *testing.T) {
	// One week of each month stands for the month: a year of a fleet
	// at a twelfth of the cost.
	var yearly []float64
	for i := range scaled(30, 15) {
		total := 0.0
		for mo := range 12 {
			// The same household (same seed and ID), installed afresh
			// each month so that the weeks between are not simulated.
			m := newModel(t, meter.Gas, fmt.Sprintf("G-%d", i), 5, Options{})
			start := time.Date(2025, time.Month(mo+1), 8, 0, 0, 0, 0, time.UTC)
			m.Advance(start)
			before := m.Consumed(0)
			m.Advance(start.AddDate(0, 0, 7))
			total += (m.Consumed(0) - before).Float() / 7 * 365 / 12
		}
		yearly = append(yearly, total)
	}
	t.Logf("m³ a year: mean %.0f, min %.0f, max %.0f", mean(yearly), slices.Min(yearly), slices.Max(yearly))
	assert.InDelta(t, 1100, mean(yearly), 250)
}

func TestElectricityEveningPeakAboveNightBase(t *testing.T) {
	meters := scaled(100, 40)
	var night, evening float64
	higher := 0
	for i := range meters {
		m := newModel(t, meter.Electricity, fmt.Sprintf("E-%d", i), 9, Options{})
		var n, e meter.Value
		for d := range 5 { // Monday to Friday
			day := winter.AddDate(0, 0, d)
			m.Advance(day.Add(2 * time.Hour))
			before := m.Consumed(0)
			m.Advance(day.Add(5 * time.Hour))
			n += m.Consumed(0) - before
			m.Advance(day.Add(18 * time.Hour))
			before = m.Consumed(0)
			m.Advance(day.Add(21 * time.Hour))
			e += m.Consumed(0) - before
		}
		if e > n {
			higher++
		}
		night += n.Float() / float64(5*3*meters)
		evening += e.Float() / float64(5*3*meters)
	}
	t.Logf("mean kW: night (2–5) %.2f, evening (18–21) %.2f; %d of %d homes peak in the evening", night, evening, higher, meters)
	assert.Greater(t, evening, 2.5*night)
	assert.GreaterOrEqual(t, higher, meters*9/10)
}

func TestLeakKeepsNightFlowAboveZero(t *testing.T) {
	leaky := Options{LeakShare: 1}
	tight := Options{LeakShare: 0}
	for _, c := range []struct {
		name string
		opts Options
		leak bool
	}{{"leak", leaky, true}, {"no leak", tight, false}} {
		t.Run(c.name, func(t *testing.T) {
			for i := range 20 {
				m := newModel(t, meter.Water, fmt.Sprintf("L-%d", i), 11, c.opts)
				require.Equal(t, c.leak, m.Traits().Leak)
				m.Advance(winter)
				for d := range 14 {
					night := winter.AddDate(0, 0, d)
					// The flow of each quarter hour from 00:15 to 05:00,
					// as the meter reports it.
					var flows []meter.Value
					for q := 1; q <= 20; q++ {
						r := m.Advance(night.Add(time.Duration(q) * 15 * time.Minute))
						require.Equal(t, meter.Channel("8-0:2.0.0"), r[1].Channel)
						flows = append(flows, r[1].Value)
					}
					if c.leak {
						assert.Positive(t, slices.Min(flows), "meter %d night %d has a zero-flow reading", i, d)
						continue
					}
					// Some whole hour of the night has no flow at all.
					quiet := false
					for h := 0; h+4 <= len(flows); h += 4 {
						if slices.Max(flows[h:h+4]) == 0 {
							quiet = true
						}
					}
					assert.True(t, quiet, "meter %d night %d has no zero-flow hour: %v", i, d, flows)
					m.Advance(night.AddDate(0, 0, 1))
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	times := []time.Time{winter, winter.Add(15 * time.Minute), winter.Add(7 * time.Hour), winter.AddDate(0, 0, 3)}
	read := func(u meter.Utility, id string, seed uint64) [][]meter.Reading {
		m := newModel(t, u, id, seed, DefaultOptions())
		var out [][]meter.Reading
		for _, at := range times {
			out = append(out, m.Advance(at))
		}
		return out
	}
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		t.Run(string(u), func(t *testing.T) {
			a := read(u, "MTR-1", 42)
			assert.Equal(t, a, read(u, "MTR-1", 42), "same seed, same meter")
			assert.NotEqual(t, a, read(u, "MTR-1", 43), "another seed")
			assert.NotEqual(t, a, read(u, "MTR-2", 42), "another meter")
		})
	}
}

// Readings at a time do not depend on how the model got there.
func TestStepSizeDoesNotMatter(t *testing.T) {
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		t.Run(string(u), func(t *testing.T) {
			end := winter.Add(26 * time.Hour)
			steps := []time.Duration{time.Minute, 15 * time.Minute, 7*time.Minute + 13*time.Second + 17*time.Millisecond}
			var want []meter.Reading
			for i, step := range steps {
				m := newModel(t, u, "MTR-STEP", 7, Options{SolarShare: 1})
				m.Advance(winter)
				for at := winter.Add(step); at.Before(end); at = at.Add(step) {
					m.Advance(at)
				}
				got := m.Advance(end)
				if i == 0 {
					want = got
					continue
				}
				assert.Equal(t, want, got, "step %v", step)
			}
			jump := newModel(t, u, "MTR-STEP", 7, Options{SolarShare: 1})
			jump.Advance(winter)
			assert.Equal(t, want, jump.Advance(end), "one jump")
		})
	}
}

func TestRegistersAreExactAndRollOver(t *testing.T) {
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		t.Run(string(u), func(t *testing.T) {
			m := newModel(t, u, "MTR-ROLL", 3, Options{RolloverShare: 1, SolarShare: 1})
			require.True(t, m.Traits().NearRollover)
			width := m.RegisterMax() + 1
			first := m.Advance(winter)
			prev, prevUsed := first[0].Value, m.Consumed(0)
			rolled := false
			for q := 1; q <= 4*24*4; q++ {
				r := m.Advance(winter.Add(time.Duration(q) * 15 * time.Minute))
				v, used := r[0].Value, m.Consumed(0)
				require.GreaterOrEqual(t, v, meter.Value(0))
				require.Less(t, v, width)
				// The difference of two reads, modulo the width, is the
				// consumption generated in between.
				assert.Equal(t, used-prevUsed, ((v-prev)%width+width)%width)
				if v < prev {
					rolled = true
				}
				prev, prevUsed = v, used
			}
			assert.True(t, rolled, "register started near its width and never rolled over")
			assert.Equal(t, (first[0].Value+m.Consumed(0))%width, prev)
		})
	}
}

func TestRegisterMaxOption(t *testing.T) {
	m := newModel(t, meter.Water, "MTR-W", 1, Options{RegisterMax: 9_999_999})
	assert.Equal(t, meter.Value(9_999_999), m.RegisterMax())
	assert.Less(t, m.Advance(winter)[0].Value, meter.Value(10_000_000))
}

func TestChannelsAndInstantaneousValues(t *testing.T) {
	for _, solar := range []bool{false, true} {
		share := 0.0
		if solar {
			share = 1
		}
		m := newModel(t, meter.Electricity, "MTR-E", 8, Options{SolarShare: share})
		want := []meter.Channel{"1-0:1.8.0", "1-0:1.7.0", "1-0:32.7.0", "1-0:31.7.0"}
		if solar {
			want = slices.Insert(want, 1, "1-0:2.8.0")
		}
		require.Equal(t, want, m.Channels())
		m.Advance(summer)
		exported := false
		for q := 1; q <= 96; q++ {
			r := m.Advance(summer.Add(time.Duration(q) * 15 * time.Minute))
			require.Len(t, r, len(want))
			for i, rd := range r {
				assert.Equal(t, want[i], rd.Channel)
				info, ok := meter.Lookup(rd.Channel)
				require.True(t, ok)
				assert.Equal(t, meter.Electricity, info.Utility)
			}
			n := len(r)
			p, v, a := r[n-3].Value.Float(), r[n-2].Value.Float(), r[n-1].Value.Float()
			assert.InDelta(t, 230, v, 5.5)
			if p > 0 {
				assert.InDelta(t, p*1000/v, a, 0.01, "current is power over voltage")
			}
			if solar && r[1].Value > 0 {
				exported = true
			}
		}
		if solar {
			assert.True(t, exported, "a summer day of solar exports something")
		}
	}
	for _, c := range []struct {
		u    meter.Utility
		want []meter.Channel
	}{
		{meter.Water, []meter.Channel{"8-0:1.0.0", "8-0:2.0.0"}},
		{meter.Gas, []meter.Channel{"7-0:3.0.0", "7-0:43.0.0"}},
	} {
		m := newModel(t, c.u, "MTR", 1, Options{})
		assert.Equal(t, c.want, m.Channels())
		assert.Equal(t, c.u, m.Utility())
	}
}

func TestTimeGoingBackIntegratesNothing(t *testing.T) {
	m := newModel(t, meter.Gas, "MTR-G", 1, Options{})
	m.Advance(winter)
	a := m.Advance(winter.Add(time.Hour))
	b := m.Advance(winter.Add(30 * time.Minute))
	assert.Equal(t, a[0].Value, b[0].Value)
	assert.Equal(t, winter.Add(30*time.Minute), b[0].Time)
}

func TestOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		err  string
	}{
		{"zero value takes defaults", Options{}, ""},
		{"defaults", DefaultOptions(), ""},
		{"share above one", Options{SolarShare: 1.5}, "solar share"},
		{"negative share", Options{LeakShare: -0.1}, "leak share"},
		{"negative mean", Options{MeanDailyKWh: -1}, "mean daily kWh"},
		{"negative register", Options{RegisterMax: -1}, "register max"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(meter.Electricity, "MTR", 1, c.opts)
			if c.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, c.err)
		})
	}
	_, err := New(meter.Utility("steam"), "MTR", 1, Options{})
	require.Error(t, err)
}

func TestLocalTimeShiftsTheDay(t *testing.T) {
	// The same household in Tokyo peaks nine hours earlier in UTC.
	tokyo := time.FixedZone("JST", 9*3600)
	peakHour := func(loc *time.Location) int {
		var hourly [24]float64
		for i := range 40 {
			m := newModel(t, meter.Electricity, fmt.Sprintf("TZ-%d", i), 4, Options{Location: loc})
			m.Advance(winter)
			for h := range 24 * 5 {
				before := m.Consumed(0)
				m.Advance(winter.Add(time.Duration(h+1) * time.Hour))
				hourly[h%24] += (m.Consumed(0) - before).Float()
			}
		}
		return slices.Index(hourly[:], slices.Max(hourly[:]))
	}
	utc, jst := peakHour(time.UTC), peakHour(tokyo)
	assert.Equal(t, (utc-9+24)%24, jst)
}

func BenchmarkAdvanceQuarterHour(b *testing.B) {
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		b.Run(string(u), func(b *testing.B) {
			m := newModel(b, u, "MTR-B", 1, DefaultOptions())
			at := winter
			m.Advance(at)
			for b.Loop() {
				at = at.Add(15 * time.Minute)
				m.Advance(at)
			}
		})
	}
}
