package testenv

import (
	"context"
	"net/http"
	"strings"
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

func TestStripeMockAnswers(t *testing.T) {
	m := StartStripeMock(t)
	req, err := http.NewRequest(http.MethodGet, m.URL+"/v1/payment_methods/pm_card_visa", nil)
	require.NoError(t, err)
	req.SetBasicAuth("sk_test_123", "")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// It checks request shapes: an unknown parameter is refused.
	bad, err := http.NewRequest(http.MethodPost, m.URL+"/v1/payment_intents", strings.NewReader("amount=100&currency=gbp&no_such_param=1"))
	require.NoError(t, err)
	bad.SetBasicAuth("sk_test_123", "")
	bad.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp2, err := http.DefaultClient.Do(bad)
	require.NoError(t, err)
	resp2.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp2.StatusCode)
}
