// Package sms is the SMS adapter: it sends text messages through Twilio's
// Messages API (payment.Sender) and receives Twilio's delivery reports
// (Callback). It owns the wire format, the retry policy and the
// verification of callbacks; what a message says and when it is sent belong
// to the payment and auth services, and where its status is kept to the
// store behind DeliveryRecorder (postgres.Payments).
//
// # Retries
//
// The Messages API has no idempotency key: a request that reached Twilio and
// whose answer was lost cannot be told apart from one that never arrived,
// and sending it again may deliver the message twice (two codes, two
// charges for the text). Send therefore retries only when Twilio cannot
// have accepted the message:
//
//   - the connection was never made (refused, DNS failure, dial timeout):
//     nothing was sent;
//   - 429 Too Many Requests and 503 Service Unavailable: Twilio says it did
//     not take the request. A Retry-After header is honoured; one asking for
//     longer than Config.MaxRetryAfter, or past the context's deadline, ends
//     the retries at once.
//
// Waits grow exponentially from Config.BackoffBase to Config.BackoffMax
// with full jitter, so a fleet of senders does not retry in step, for at
// most Config.MaxAttempts attempts; then Send fails with apperr code
// unavailable. Every other failure is returned at once:
//
//   - 400 (a number or text Twilio refuses) is apperr invalid; other 4xx
//     answers (401 and 403: our credentials or account; 404: a wrong
//     account SID) are misconfiguration, apperr internal. Both wrap an
//     *APIError with Twilio's error code.
//   - Any other 5xx, a timeout after the request was written, or an
//     unreadable answer may hide an accepted message: the error wraps
//     ErrOutcomeUnknown and is not retried. The caller records the message
//     as failed; a household that did not get its code asks for another,
//     within the one-time password's resend policy.
//
// # Delivery reports
//
// Callback is the http.Handler for the StatusCallback URL. It verifies the
// X-Twilio-Signature header (HMAC-SHA1, keyed by the auth token, over the
// configured callback URL and the sorted POST parameters), compared in
// constant time, before reading anything else; a missing or wrong signature
// is answered 403 and changes nothing. The URL is the configured one, never
// the request's Host header, so a proxy in front of the server does not
// break verification and a forged Host cannot help a forger. Statuses only
// move forward (queued → sent → delivered, undelivered or failed); the
// store ignores a late "sent" after "delivered".
//
// Twilio may report before the answer to the send has come back and the
// message's id is recorded. Since it does not call a status callback again
// after an error answer (retries on HTTP errors are an opt-in connection
// override), such a report is not refused: it is kept by the store
// (DeliveryRecorder.SMSEarlyDelivery) for Config.EarlyReportTTL, at most
// Config.MaxEarlyReports of them, and applied when the send result is
// recorded. Only a report with a good signature is kept.
//
// Neither the text of a message (it may hold a one-time password) nor the
// full number is ever logged or put into an error.
package sms
