package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// CopyStrings writes ss as the rows of table's column col through the text
// COPY the bill writers use.
func CopyStrings(ctx context.Context, tx pgx.Tx, table, col string, ss []string) error {
	var c textCopy
	for _, s := range ss {
		c.row()
		c.str(s)
	}
	return copyText(ctx, tx, table, []string{col}, &c)
}
