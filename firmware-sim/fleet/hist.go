package fleet

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a log-linear latency histogram in the manner of
// HdrHistogram: values (microseconds) below 32 have a bucket each, and
// every power of two above is split into 32 buckets, so a percentile is
// off by at most 1/64 of its value. Recording is one atomic add and is
// safe for concurrent use; the maximum is exact.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	// histMaxExp bounds values at 2^40 µs (about 12 days).
	histMaxExp  = 40
	histBuckets = (histMaxExp - histSubBits + 2) * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	k := bits.Len64(v) - 1 // v is in [2^k, 2^(k+1))
	if k > histMaxExp {
		return histBuckets - 1
	}
	m := v >> (k - histSubBits) // in [32, 64)
	return (k-histSubBits+1)*histSub + int(m-histSub)
}

// histMid returns the middle of bucket i.
func histMid(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	g := i / histSub
	m := uint64(i%histSub + histSub)
	lo := m << (g - 1)
	hi := (m + 1) << (g - 1)
	return float64(lo+hi-1) / 2
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[histIndex(uint64(us))].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// snapshot copies the counts, for percentiles of everything so far or,
// by difference with an earlier snapshot, of a window.
func (h *histogram) snapshot() *histCounts {
	var c histCounts
	for i := range h.counts {
		c.counts[i] = h.counts[i].Load()
	}
	c.maxUs = h.max.Load()
	return &c
}

type histCounts struct {
	counts [histBuckets]uint64
	maxUs  int64
}

// since returns the counts recorded after prev (which may be nil).
func (c *histCounts) since(prev *histCounts) *histCounts {
	if prev == nil {
		return c
	}
	var d histCounts
	for i := range c.counts {
		d.counts[i] = c.counts[i] - prev.counts[i]
	}
	d.maxUs = c.maxUs
	return &d
}

func (c *histCounts) total() uint64 {
	var n uint64
	for _, v := range c.counts {
		n += v
	}
	return n
}

// quantile returns the q-quantile (0 < q ≤ 1) in milliseconds, or 0 when
// nothing was recorded.
func (c *histCounts) quantile(q float64) float64 {
	n := c.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i, v := range c.counts {
		seen += v
		if seen >= rank {
			return math.Min(histMid(i), float64(c.maxUs)) / 1000
		}
	}
	return float64(c.maxUs) / 1000
}
