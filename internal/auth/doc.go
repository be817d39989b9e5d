// Package auth owns who may call the API: users (household members and
// operators) who sign in with a phone number, a password and a one-time
// code sent by SMS; the sessions that sign-in opens; and API tokens that
// give integrators named scopes.
//
// Secrets are never kept: passwords as argon2id hashes, session and API
// tokens as SHA-256 of 256 random bits, sign-in codes as HMACs under a
// server key (internal/otp). The package does no I/O of its own: a Store
// keeps its state and a Sender delivers codes.
package auth
