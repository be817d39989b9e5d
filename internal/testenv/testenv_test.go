package testenv

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPostgresIsFreshAndMigrated(t *testing.T) {
	a, b := PostgresDB(t), PostgresDB(t)
	ctx := context.Background()
	_, err := a.Pool.Exec(ctx, `insert into households(name) values ('only in a')`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, `select count(*) from households`).Scan(&n))
	require.Zero(t, n, "databases of two tests must not share rows")
	var v int
	require.NoError(t, a.Pool.QueryRow(ctx, `select version from schema_version`).Scan(&v))
	require.Positive(t, v)
}

func TestInfluxAnswers(t *testing.T) {
	i := InfluxDB(t)
	require.NotEmpty(t, i.URL)
	require.Contains(t, i.Bucket, "/autogen")
}
