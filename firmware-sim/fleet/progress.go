package fleet

import (
	"context"
	"fmt"
	"io"
	"time"
)

// progress writes a one-line status every second, overwriting itself with
// a carriage return: a status line, not a bar, because a run may have no
// known end (and so no total to fill up).
func (f *Fleet) progress(ctx context.Context, w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	var lastAcked int64
	var prev *histCounts
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return
		case now := <-t.C:
			s := &f.stats
			count := s.acked.Load()
			if f.cfg.QoS == 0 {
				count = s.sent.Load()
			}
			rate := float64(count-lastAcked) / now.Sub(last).Seconds()
			last, lastAcked = now, count
			snap := s.latency.snapshot()
			win := snap.since(prev)
			prev = snap
			fmt.Fprintf(w, "\rconnected %d/%d  sent %d  acked %d  failed %d  rejected %d  %.0f msg/s  ack p50 %.1f ms p99 %.1f ms   ",
				s.connected.Load(), len(f.meters), s.sent.Load(), s.acked.Load(), s.failed.Load(), s.rejected.Load(),
				rate, win.quantile(0.5), win.quantile(0.99))
		}
	}
}
