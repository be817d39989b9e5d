package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/meterflow/meterflow/internal/phone"
	"github.com/meterflow/meterflow/internal/postgres"
)

// PhonesCmd administers households' phone numbers.
type PhonesCmd struct {
	Add PhonesAddCmd `cmd:"" help:"Record a household's phone number, verified (for example at account opening); households add their own in the portal."`
}

// PhonesAddCmd records a verified phone.
type PhonesAddCmd struct {
	Postgres  PostgresFlags `embed:""`
	Household int64         `required:"" help:"Household id."`
	Phone     string        `required:"" help:"Phone number; normalised to E.164."`
	Region    string        `default:"GB" help:"Country assumed for a number without a country code."`
}

// Run records the phone as verified now.
func (c *PhonesAddCmd) Run(ctx context.Context) error {
	db, e164, err := openForPhone(ctx, c.Postgres, c.Phone, c.Region)
	if err != nil {
		return err
	}
	defer db.Close()
	id, err := (&postgres.Payments{DB: db}).AddPhone(ctx, c.Household, e164, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("phone %d: %s, verified, household %d\n", id, e164, c.Household)
	return nil
}

// SMSCmd reads the development SMS inbox.
type SMSCmd struct {
	Inbox SMSInboxCmd `cmd:"" help:"Show what the development SMS sender delivered (sign-in and payment codes), newest first."`
}

// SMSInboxCmd lists development messages to a number.
type SMSInboxCmd struct {
	Postgres PostgresFlags `embed:""`
	To       string        `required:"" help:"Phone number the messages went to."`
	Region   string        `default:"GB" help:"Country assumed for a number without a country code."`
	Limit    int           `default:"5" help:"How many messages."`
}

// Run prints the messages.
func (c *SMSInboxCmd) Run(ctx context.Context) error {
	db, e164, err := openForPhone(ctx, c.Postgres, c.To, c.Region)
	if err != nil {
		return err
	}
	defer db.Close()
	msgs, err := (&postgres.DevSMS{DB: db}).Inbox(ctx, e164, max(1, min(c.Limit, 100)))
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, m := range msgs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", m.CreatedAt.Local().Format(time.DateTime), m.To, m.Body)
	}
	return w.Flush()
}

// openForPhone normalises a number to E.164 and opens the database.
func openForPhone(ctx context.Context, pg PostgresFlags, raw, region string) (*postgres.DB, string, error) {
	e164, err := phone.Normalize(raw, region)
	if err != nil {
		return nil, "", err
	}
	db, err := postgres.Open(ctx, pg.Config())
	return db, e164, err
}
