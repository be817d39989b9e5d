// Package influx is the InfluxDB adapter: it writes raw readings, the
// 15-minute interval grid and its rollups (per meter, and per utility and
// region for the fleet) for dashboards and analytics through the InfluxDB
// 2.x write API, and reads them back with Flux. The schema is in
// docs/influxdb.md. The same code serves InfluxDB 2.x (org, bucket, token)
// and InfluxDB 1.8 with flux-enabled (org "", bucket "database/retention",
// token "" or "user:password").
//
// Billing never reads InfluxDB: the system of record is PostgreSQL.
package influx
