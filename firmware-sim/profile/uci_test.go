package profile

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

// The reference household is a subset of the UCI Machine Learning
// Repository dataset "Individual household electric power consumption"
// (dataset 235) by Georges Hébrail and Alice Bérard (EDF), licensed
// CC BY 4.0: one-minute measurements of one home in Sceaux, France, over
// the weekend of 16–17 December 2006. It lives beside the repository
// (../shared/data from the repository root) and is not part of the
// project: the test skips when it is absent.
const uciFile = "uci-household-power-subset.txt"

// findUCI returns the path of the reference data, or "" when it is absent.
func findUCI(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "data", uciFile)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	return p
}

// uciHourly reads the reference file into the mean active power (kW) of
// each hour of the day.
func uciHourly(t *testing.T, path string) [24]float64 {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var sum [24]float64
	var n [24]int
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// Date;Time;Global_active_power;...
		fields := strings.Split(sc.Text(), ";")
		if len(fields) < 3 || fields[2] == "?" {
			continue
		}
		h, err := strconv.Atoi(strings.SplitN(fields[1], ":", 2)[0])
		require.NoError(t, err)
		p, err := strconv.ParseFloat(fields[2], 64)
		require.NoError(t, err)
		sum[h] += p
		n[h]++
	}
	require.NoError(t, sc.Err())
	var out [24]float64
	for h := range out {
		require.NotZero(t, n[h], "hour %d has no data", h)
		out[h] = sum[h] / float64(n[h])
	}
	return out
}

// nightAndEvening returns the mean of hours 1–4 (night base) and 17–21
// (evening peak) of an hourly profile.
func nightAndEvening(p [24]float64) (night, evening float64) {
	for h := 1; h < 5; h++ {
		night += p[h] / 4
	}
	for h := 17; h < 22; h++ {
		evening += p[h] / 5
	}
	return night, evening
}

func TestElectricityShapeLikeRealHousehold(t *testing.T) {
	path := findUCI(t)
	if path == "" {
		t.Skip("reference data ../shared/data/" + uciFile + " is absent")
	}
	real := uciHourly(t, path)
	realNight, realEvening := nightAndEvening(real)
	realDaily := 0.0
	for _, p := range real {
		realDaily += p
	}

	// The simulated fleet on winter weekends, like the reference.
	meters := scaled(150, 60)
	var sim [24]float64
	var daily, heatedDaily []float64
	days := []time.Time{
		time.Date(2024, 12, 14, 0, 0, 0, 0, time.UTC), time.Date(2024, 12, 15, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 1, 11, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 12, 0, 0, 0, 0, time.UTC),
	}
	for i := range meters {
		m, err := New(meter.Electricity, fmt.Sprintf("UCI-%03d", i), 2006, DefaultOptions())
		require.NoError(t, err)
		total := 0.0
		for _, d := range days {
			m.Advance(d)
			for h := range 24 {
				before := m.Consumed(0)
				m.Advance(d.Add(time.Duration(h+1) * time.Hour))
				kwh := (m.Consumed(0) - before).Float()
				sim[h] += kwh / float64(meters*len(days))
				total += kwh
			}
		}
		daily = append(daily, total/float64(len(days)))
		if m.Traits().ElectricHeating {
			heatedDaily = append(heatedDaily, total/float64(len(days)))
		}
	}
	simNight, simEvening := nightAndEvening(sim)
	realRatio, simRatio := realEvening/realNight, simEvening/simNight
	t.Logf("evening/night: reference %.2f (%.2f/%.2f kW), simulated %.2f (%.2f/%.2f kW)",
		realRatio, realEvening, realNight, simRatio, simEvening, simNight)

	// The evening peak stands well above the night base in both, by a
	// similar factor.
	assert.Greater(t, realRatio, 1.5)
	assert.Greater(t, simRatio, 1.5)
	assert.InDelta(t, 0, math.Log(simRatio/realRatio), math.Log(2.5), "evening/night ratios differ by more than 2.5 times")

	// The hour-by-hour shape follows the real one.
	corr := pearson(real[:], sim[:])
	t.Logf("hourly profile correlation %.2f", corr)
	assert.Greater(t, corr, 0.6)

	// Level: the reference home (1.3 kW at night in December: it heats
	// with electricity) uses about 50 kWh a day. That is far above the
	// fleet's median but within the range of its electrically heated
	// homes.
	slices.Sort(daily)
	median := daily[len(daily)/2]
	t.Logf("daily kWh: reference %.1f; simulated median %.1f, max %.1f, heated homes %v", realDaily, median, daily[len(daily)-1], heatedDaily)
	assert.Greater(t, realDaily, median)
	assert.Less(t, realDaily, 1.5*daily[len(daily)-1])
	require.NotEmpty(t, heatedDaily)
	assert.InDelta(t, 0, math.Log(mean(heatedDaily)/realDaily), math.Log(3), "heated homes are not within 3 times the reference")
}

func pearson(a, b []float64) float64 {
	ma, mb := mean(a), mean(b)
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}
