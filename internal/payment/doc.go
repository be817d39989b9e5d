// Package payment owns payments: a household's payment of a bill, of the
// cost accrued so far, or a prepaid top-up, confirmed by a one-time password
// sent by SMS and charged through a payment gateway.
//
// A payment is a persisted state machine:
//
//	created ──SendCode──▶ otp_sent ──Confirm──▶ confirmed ──▶ charging ──▶ succeeded
//	   │                     │                                   │
//	   └──────────┬──────────┘                                   └──────▶ failed
//	              ▼
//	      expired (past confirm_by, with a notice) | canceled
//
// What must hold:
//   - A charge happens at most once. The payment is saved in state charging,
//     with its idempotency key, before the gateway is called; the gateway
//     returns the first result for a repeated key, so a recovery pass
//     (Recover) re-issues the charge of a payment whose process died with
//     the same key and records what the gateway says.
//   - Two confirmations of one payment charge once: every transition runs
//     with the payment's row locked, and charging starts only from
//     confirmed.
//   - A code confirms only the payment it was sent for (package otp binds
//     it to the payment's id, amount, currency, payee and bill).
//   - A succeeded payment posts one balanced ledger entry and marks its bill
//     paid (or credits the prepaid balance) in the same transaction.
//
// The package declares what it needs: a Store (PostgreSQL), a Gateway and a
// Sender. docs/payments.md describes the model and the policies.
package payment
