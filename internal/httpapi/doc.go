// Package httpapi is the HTTP edge of the server: liveness and readiness
// probes, Prometheus metrics, and (as it grows) the JSON API under /api/v1.
// It maps domain error codes to HTTP statuses; nothing below it knows HTTP.
package httpapi
