// Package alert owns what Meterflow tells people about: household alerts
// (budgets, projected bills, upcoming and issued bills, payments, abnormal
// usage, suspected leaks, silent meters) and operator alarms (meters
// offline, VEE exception rates, ingest lag, stores down, payment failures).
//
// It owns the rules (pure functions over data, in rules.go), the evaluator
// that runs them periodically and on outbox events, the notification outbox
// sender (SMS through payment.Sender, the in-app inbox, live push), the hub
// that streams a household's alerts to its open portals, and the alarm
// lifecycle (active, acknowledged, cleared, with history).
//
//	outbox events ──▶ Events ──┐
//	                           ├─▶ decide ──▶ Store.Record (alert + deliveries, one tx, unique key)
//	periodic scans ──▶ Evaluate┘                        │
//	                                                    ▼
//	              Sender: claim (lease) ──▶ inapp: Hub ──▶ SSE     sms: payment.Sender
//	                                   └──▶ mark sent / retry with backoff / dead
//
// What must hold:
//   - One alert per condition and period: its key names both, and recording
//     a key that exists changes nothing. Running an evaluation twice, or
//     handling an outbox event twice, sends nothing twice.
//   - A decided alert is not lost: it is written with its deliveries in one
//     transaction, and a delivery claimed by a sender that dies is claimed
//     again when its lease runs out.
//   - SMS waits for the end of the household's quiet hours; the inbox and
//     live push do not.
//   - A household sees and streams only its own alerts.
//
// docs/alerts.md documents every rule, threshold and guarantee.
package alert
