// Package postgres is the PostgreSQL adapter: the system of record for
// everything that touches money. It owns the schema (migrations embedded in
// the binary and applied with tern), the connection pool, and the SQL behind
// the stores that domain packages declare.
//
// Domain packages never import it; cmd/meterflow wires its stores into them.
package postgres
