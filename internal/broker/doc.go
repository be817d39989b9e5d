// Package broker embeds the MQTT broker (mochi-mqtt) that meters connect to.
//
// It owns the listeners (TCP, TLS with optional client certificates), meter
// authentication and the per-meter topic ACL, and the publish hook that hands
// each reading payload to the ingest pipeline. The hook runs on the meter's
// own connection goroutine before the PUBACK: a meter is acknowledged only
// once its readings are durable, and a slow journal slows only the meters
// publishing into it (natural backpressure).
//
// Readings are taken in-process by the hook, never through a subscriber:
// mochi drops messages for a subscriber whose outbound queue is full.
package broker
