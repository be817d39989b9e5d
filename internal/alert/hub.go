package alert

import "sync"

// Hub fans alerts out to the open portals of their household (live push,
// served as server-sent events). A subscriber sees only the alerts of the
// household it subscribed to; household 0 is an operator's view of every
// household. Publishing never blocks: a subscriber too slow to take an
// alert loses it (it is in the inbox regardless) and is told so by the
// dropped count. The hub lives in one process: a portal connected to
// another node sees the alert in its inbox and on its next reconnect.
type Hub struct {
	mu     sync.Mutex
	subs   map[int64]map[*Subscription]struct{}
	closed bool
}

// Subscription is one open stream.
type Subscription struct {
	// C carries the alerts; it is closed when the subscription ends (the
	// hub closed, or Cancel).
	C         <-chan Alert
	c         chan Alert
	household int64
	hub       *Hub
	once      sync.Once
	mu        sync.Mutex
	dropped   int
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[int64]map[*Subscription]struct{}{}} }

// Subscribe opens a stream of household's alerts (0: every household's),
// buffering up to buffer alerts.
func (h *Hub) Subscribe(household int64, buffer int) *Subscription {
	c := make(chan Alert, max(buffer, 1))
	s := &Subscription{C: c, c: c, household: household, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(c)
		return s
	}
	if h.subs[household] == nil {
		h.subs[household] = map[*Subscription]struct{}{}
	}
	h.subs[household][s] = struct{}{}
	return s
}

// Cancel ends the subscription and closes C.
func (s *Subscription) Cancel() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.subs[s.household]; m != nil {
		if _, ok := m[s]; ok {
			delete(m, s)
			s.close()
		}
		if len(m) == 0 {
			delete(h.subs, s.household)
		}
	}
}

func (s *Subscription) close() { s.once.Do(func() { close(s.c) }) }

// Dropped counts alerts this subscriber was too slow to take.
func (s *Subscription) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Publish hands a to the subscribers of its household and of every
// household, and returns how many took it.
func (h *Hub) Publish(a Alert) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, hh := range []int64{a.HouseholdID, 0} {
		for s := range h.subs[hh] {
			select {
			case s.c <- a:
				n++
			default:
				s.mu.Lock()
				s.dropped++
				s.mu.Unlock()
			}
		}
		if a.HouseholdID == 0 {
			break
		}
	}
	return n
}

// Close ends every subscription; later ones end at once.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, m := range h.subs {
		for s := range m {
			s.close()
		}
	}
	h.subs = map[int64]map[*Subscription]struct{}{}
}
