package profile

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// Stream keys keep the generators of one meter independent of each other:
// the household draw, the daily plans, the per-minute noise and the fleet
// weather each seed their PCG with a different second word.
const (
	keyHousehold uint64 = 0x686f757365686f6c // "househol"
	keyDay       uint64 = 0x6461792d706c616e // "day-plan"
	keyNoise     uint64 = 0x6e6f6973652d6d69 // "noise-mi"
	keyWeather   uint64 = 0x77656174686572ff // "weather"
	keySpell     uint64 = 0x7370656c6c2d7778 // "spell-wx"
)

// MeterSeed mixes the fleet seed with a meter ID into the seed of that
// meter's generators. The fleet uses it too, so that fault decisions are
// as reproducible as readings.
func MeterSeed(seed uint64, meterID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(meterID))
	return splitmix(seed ^ splitmix(h.Sum64()))
}

// splitmix is the SplitMix64 finaliser: a bijective scramble of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit turns 64 random bits into a float in [0, 1).
func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }

// normalAt returns a standard normal deviate that is a pure function of
// (a, b): the PCG is seeded, drawn twice and thrown away (Box-Muller).
func normalAt(a, b uint64) float64 {
	var p rand.PCG
	p.Seed(a, b)
	u1 := unit(p.Uint64())
	u2 := unit(p.Uint64())
	if u1 < 1e-300 {
		u1 = 1e-300
	}
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// lognormal returns a log-normal factor with mean 1 and log-standard
// deviation sigma.
func lognormal(r *rand.Rand, sigma float64) float64 {
	return math.Exp(sigma*r.NormFloat64() - sigma*sigma/2)
}

// uniform returns a float in [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// poisson draws from a Poisson distribution of mean lambda (Knuth; the
// means here are small).
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	l := math.Exp(-lambda)
	k := 0
	for p := r.Float64(); p > l; p *= r.Float64() {
		k++
	}
	return k
}

// pick returns an index drawn with probability proportional to weights.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// minuteFromShape draws a minute of the day whose hour is weighted by
// shape (24 hourly weights).
func minuteFromShape(r *rand.Rand, shape *[24]float64) int {
	return pick(r, shape[:])*60 + r.IntN(60)
}

// minuteBetween draws a minute of the day uniformly in [fromHour, toHour).
func minuteBetween(r *rand.Rand, fromHour, toHour float64) int {
	return int(uniform(r, fromHour*60, toHour*60))
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
