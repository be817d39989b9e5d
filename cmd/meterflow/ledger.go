package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"

	"github.com/meterflow/meterflow/internal/ledger"
	"github.com/meterflow/meterflow/internal/postgres"
)

// LedgerCmd administers the double-entry ledger.
type LedgerCmd struct {
	Check LedgerCheckCmd `cmd:"" help:"Check that every ledger entry, and the whole ledger, balances to zero."`
}

// LedgerCheckCmd checks the ledger.
type LedgerCheckCmd struct {
	Postgres PostgresFlags `embed:""`
}

// Run prints the report and fails when the ledger does not balance.
func (c *LedgerCheckCmd) Run(ctx context.Context, log *slog.Logger) error {
	db, err := postgres.Open(ctx, c.Postgres.Config())
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := (&postgres.Payments{DB: db}).CheckLedger(ctx)
	if err != nil {
		return err
	}
	printLedgerReport(os.Stdout, r)
	if !r.OK() {
		return fmt.Errorf("ledger does not balance: %d unbalanced entries", len(r.Unbalanced))
	}
	return nil
}

func printLedgerReport(w io.Writer, r ledger.Report) {
	fmt.Fprintf(w, "entries %d, postings %d\n", r.Entries, r.Postings)
	curs := make([]string, 0, len(r.Totals))
	for c := range r.Totals {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	for _, c := range curs {
		fmt.Fprintf(w, "total %s %s\n", c, r.Totals[c])
	}
	for _, id := range r.Unbalanced {
		fmt.Fprintf(w, "unbalanced entry %d\n", id)
	}
	if r.OK() {
		fmt.Fprintln(w, "ok: the ledger balances")
	}
}
