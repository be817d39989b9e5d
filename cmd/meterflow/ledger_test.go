package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/testenv"
)

func TestLedgerCheck(t *testing.T) {
	cmd := &LedgerCheckCmd{Postgres: PostgresFlags{URL: testenv.Postgres(t), MaxConns: 2}}
	require.NoError(t, cmd.Run(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil))))

	var out bytes.Buffer
	printLedgerReport(&out, ledger.Report{Entries: 2, Postings: 4, Unbalanced: []int64{7},
		Totals: map[string]decimal.Decimal{"GBP": decimal.RequireFromString("0.01")}})
	assert.Equal(t, "entries 2, postings 4\ntotal GBP 0.01\nunbalanced entry 7\n", out.String())
}
