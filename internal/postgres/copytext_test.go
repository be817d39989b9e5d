package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/testenv"
)

// Text that COPY's text format treats specially comes back as it went in.
func TestTextCopyRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	in := []string{"plain", "", "tab\there", "new\nline", `back\slash`, "cr\r", `\N`, "Ünïcödé £ € ×", "end\\"}
	var out []string
	require.NoError(t, db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `create temp table copy_strings (n serial, s text)`); err != nil {
			return err
		}
		if err := postgres.CopyStrings(ctx, tx, "copy_strings", "s", in); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `select s from copy_strings order by n`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}))
	assert.Equal(t, in, out)
}
