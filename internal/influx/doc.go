// Package influx is the InfluxDB adapter: it writes raw readings and rollups
// for dashboards and analytics through the InfluxDB 2.x write API, and reads
// them back with Flux. The same code serves InfluxDB 2.x (org, bucket, token)
// and InfluxDB 1.8 with flux-enabled (org "", bucket "database/retention",
// token "" or "user:password").
//
// Billing never reads InfluxDB: the system of record is PostgreSQL.
package influx
