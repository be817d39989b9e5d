// Package fleet owns the simulated meters' side of the wire: one MQTT
// connection per meter with the meter's own credentials, the schedule on
// which each meter measures and publishes, the store-and-forward backlog
// that keeps unacknowledged readings through an outage and sends them in
// batches when the meter is back, fault injection, load control (rate,
// connect rate, reconnect backoff) and the statistics of a run: the live
// progress line, the acknowledged-readings log and the final summary.
//
// Each meter runs in one goroutine that owns all of its state (model,
// backlog, connection); the fleet shares only counters, rate limiters and
// the acknowledged log, all safe for concurrent use.
//
//	credentials ─▶ meter goroutine ──▶ profile.Model.Advance (readings at each interval)
//	                 │   ▲                 │
//	                 │   └── backlog ◀─────┘ (bounded; oldest dropped when full)
//	                 ▼
//	   paho client (one per connection) ──PUBLISH──▶ broker
//	                 ▲                                 │
//	                 └──────────── PUBACK ◀────────────┘ ─▶ stats, acked log
//
// A message counts as acknowledged only when its QoS 1 PUBACK arrived.
// Paho's own store is replaced by one that keeps nothing, so paho never
// resends a message by itself: every retransmission is the backlog's, and
// is counted once.
package fleet
