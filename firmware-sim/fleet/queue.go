package fleet

import "github.com/meterflow/meterflow/internal/meter"

// maxChannels is the most channels a simulated meter reports (electricity
// with solar: two registers and three instantaneous values).
const maxChannels = 5

// entry is one protocol message a meter generated: the readings of all its
// channels at one time, under one sequence number. It is kept compact
// (no per-reading channel names or times) because a fleet can hold many
// of them through an outage.
type entry struct {
	seq  uint64
	ms   int64 // reported time, Unix milliseconds (clock skew included)
	vals [maxChannels]meter.Value
	sent bool // published at least once
}

// backlog is a meter's bounded FIFO of entries generated but not yet
// acknowledged. When it is full, pushing drops the oldest entry, as a
// meter's load-profile memory overwrites its oldest records. Its storage
// grows with use and is released once it has drained, so that an idle
// fleet holds almost nothing. A backlog is owned by one goroutine.
type backlog struct {
	items []entry
	head  int
	n     int
	limit int
}

func newBacklog(limit int) backlog { return backlog{limit: limit} }

// push appends e and reports whether the oldest entry had to be dropped
// to make room.
func (b *backlog) push(e entry) (dropped bool) {
	if b.n == b.limit {
		b.head = (b.head + 1) % len(b.items)
		b.n--
		dropped = true
	}
	if b.n == len(b.items) {
		b.grow()
	}
	b.items[(b.head+b.n)%len(b.items)] = e
	b.n++
	return dropped
}

func (b *backlog) grow() {
	size := max(4, 2*len(b.items))
	size = min(size, b.limit)
	items := make([]entry, size)
	for i := 0; i < b.n; i++ {
		items[i] = b.items[(b.head+i)%len(b.items)]
	}
	b.items, b.head = items, 0
}

// len is the number of entries waiting.
func (b *backlog) len() int { return b.n }

// at returns the i-th oldest entry.
func (b *backlog) at(i int) *entry { return &b.items[(b.head+i)%len(b.items)] }

// pop removes the k oldest entries.
func (b *backlog) pop(k int) {
	k = min(k, b.n)
	b.head = (b.head + k) % max(1, len(b.items))
	b.n -= k
	if b.n == 0 {
		b.head = 0
		if len(b.items) > 16 {
			b.items = nil
		}
	}
}
