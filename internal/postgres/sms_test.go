package postgres_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
	"github.com/meterflow/meterflow/internal/postgres"
	"github.com/meterflow/meterflow/internal/sms/smstest"
	"github.com/meterflow/meterflow/internal/testenv"
)

// devInbox reads the development inbox for the sender suite.
type devInbox struct{ d *postgres.DevSMS }

func (i devInbox) Messages(ctx context.Context, to string) ([]smstest.Message, error) {
	msgs, err := i.d.Inbox(ctx, to, 1000)
	if err != nil {
		return nil, err
	}
	slices.Reverse(msgs)
	out := make([]smstest.Message, len(msgs))
	for n, m := range msgs {
		out[n] = smstest.Message{ID: "dev-" + strconv.FormatInt(m.ID, 10), To: m.To, Body: m.Body}
	}
	return out, nil
}

func TestDevSMSSenderSuite(t *testing.T) {
	db := testenv.PostgresDB(t)
	d := &postgres.DevSMS{DB: db}
	smstest.RunSenderSuite(t, func(t *testing.T) (payment.Sender, smstest.Inbox) { return d, devInbox{d} })
}

func TestSMSDeliveryNeverGoesBackwards(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	// message queues a message, records its send as providerID (unless
	// empty) and returns its id.
	message := func(t *testing.T, providerID string) int64 {
		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into sms_messages (to_e164, purpose, body, provider, created_at, updated_at)
			values ('+447700900123', 'notice', 'hello', 'twilio', $1, $1) returning id`, t0).Scan(&id))
		if providerID != "" {
			require.NoError(t, store.SMSResult(ctx, id, providerID, nil, t0))
		}
		return id
	}
	status := func(t *testing.T, id int64) (string, string, time.Time) {
		var s, e string
		var at time.Time
		require.NoError(t, db.Pool.QueryRow(ctx, `select status, error, updated_at from sms_messages where id = $1`, id).Scan(&s, &e, &at))
		return s, e, at
	}

	cases := []struct {
		name    string
		reports []string
		want    string
	}{
		{"sent then delivered", []string{"sent", "delivered"}, "delivered"},
		{"late sent after delivered", []string{"delivered", "sent"}, "delivered"},
		{"undelivered after delivered", []string{"delivered", "undelivered"}, "delivered"},
		{"delivered after failed", []string{"failed", "delivered"}, "failed"},
		{"delivered after undelivered", []string{"undelivered", "delivered"}, "undelivered"},
		{"sent twice", []string{"sent", "sent"}, "sent"},
		{"failed after sent", []string{"sent", "failed"}, "failed"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sid := "SM" + tc.name
			id := message(t, sid)
			for n, r := range tc.reports {
				require.NoError(t, store.SMSDelivery(ctx, "twilio", sid, r, "", t0.Add(time.Duration(i*10+n+1)*time.Minute)), r)
			}
			got, _, _ := status(t, id)
			assert.Equal(t, tc.want, got)
		})
	}

	t.Run("a queued message takes any report", func(t *testing.T) {
		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into sms_messages (to_e164, purpose, body, provider, provider_id, created_at, updated_at)
			values ('+447700900123', 'notice', 'hello', 'twilio', 'SMqueued', $1, $1) returning id`, t0).Scan(&id))
		require.NoError(t, store.SMSDelivery(ctx, "twilio", "SMqueued", "delivered", "", t0.Add(time.Hour)))
		got, _, at := status(t, id)
		assert.Equal(t, "delivered", got)
		assert.True(t, at.Equal(t0.Add(time.Hour)))
	})

	t.Run("an ignored report changes nothing", func(t *testing.T) {
		id := message(t, "SMstale")
		require.NoError(t, store.SMSDelivery(ctx, "twilio", "SMstale", "undelivered", "twilio error 30003", t0.Add(time.Hour)))
		require.NoError(t, store.SMSDelivery(ctx, "twilio", "SMstale", "sent", "", t0.Add(2*time.Hour)))
		require.NoError(t, store.SMSDelivery(ctx, "twilio", "SMstale", "delivered", "", t0.Add(3*time.Hour)))
		got, errText, at := status(t, id)
		assert.Equal(t, "undelivered", got)
		assert.Equal(t, "twilio error 30003", errText)
		assert.True(t, at.Equal(t0.Add(time.Hour)), "updated_at is the last change's")
	})

	t.Run("unknown message and status", func(t *testing.T) {
		message(t, "SMknown")
		err := store.SMSDelivery(ctx, "twilio", "SMnope", "delivered", "", t0)
		assert.Equal(t, apperr.NotFound, apperr.CodeOf(err), "%v", err)
		err = store.SMSDelivery(ctx, "other", "SMknown", "delivered", "", t0)
		assert.Equal(t, apperr.NotFound, apperr.CodeOf(err), "the provider is part of the id")
		err = store.SMSDelivery(ctx, "twilio", "SMknown", "queued", "", t0)
		assert.Equal(t, apperr.Invalid, apperr.CodeOf(err))
	})
}

func TestSMSReportBeforeSendResult(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const maxKept = 100

	queue := func(t *testing.T) int64 {
		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into sms_messages (to_e164, purpose, body, provider, created_at, updated_at)
			values ('+447700900123', 'notice', 'hello', 'twilio', $1, $1) returning id`, t0).Scan(&id))
		return id
	}
	status := func(t *testing.T, id int64) (string, string) {
		var s, e string
		require.NoError(t, db.Pool.QueryRow(ctx, `select status, error from sms_messages where id = $1`, id).Scan(&s, &e))
		return s, e
	}
	kept := func(t *testing.T, sid string) int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `select count(*) from sms_early_reports where provider_id = $1`, sid).Scan(&n))
		return n
	}
	// report delivers a report as the callback does: SMSDelivery first,
	// SMSEarlyDelivery when it finds no message.
	report := func(t *testing.T, sid, st, errText string, at time.Time) error {
		err := store.SMSDelivery(ctx, "twilio", sid, st, errText, at)
		if apperr.CodeOf(err) != apperr.NotFound {
			return err
		}
		return store.SMSEarlyDelivery(ctx, "twilio", sid, st, errText, at, at.Add(15*time.Minute), maxKept)
	}

	type rep struct{ status, err string }
	cases := []struct {
		name    string
		reports []rep
		want    rep
	}{
		{"delivered", []rep{{"delivered", ""}}, rep{"delivered", ""}},
		{"sent", []rep{{"sent", ""}}, rep{"sent", ""}},
		{"sent then delivered", []rep{{"sent", ""}, {"delivered", ""}}, rep{"delivered", ""}},
		{"delivered then a late sent", []rep{{"delivered", ""}, {"sent", ""}}, rep{"delivered", ""}},
		{"undelivered then delivered", []rep{{"undelivered", "twilio error 30003"}, {"delivered", ""}}, rep{"undelivered", "twilio error 30003"}},
		{"failed then undelivered", []rep{{"failed", "twilio error 30008"}, {"undelivered", ""}}, rep{"failed", "twilio error 30008"}},
		{"sent twice", []rep{{"sent", ""}, {"sent", ""}}, rep{"sent", ""}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sid := "SMearly" + strconv.Itoa(i)
			id := queue(t)
			for n, r := range tc.reports {
				require.NoError(t, report(t, sid, r.status, r.err, t0.Add(time.Duration(n)*time.Second)), r.status)
			}
			s, _ := status(t, id)
			assert.Equal(t, "queued", s, "a kept report touches no message")
			assert.Equal(t, 1, kept(t, sid), "one kept report per message id")

			require.NoError(t, store.SMSResult(ctx, id, sid, nil, t0.Add(time.Minute)))
			s, e := status(t, id)
			assert.Equal(t, tc.want, rep{s, e})
			assert.Zero(t, kept(t, sid), "applied reports are deleted")

			// Reports after the result go straight to the message.
			require.NoError(t, report(t, sid, "sent", "", t0.Add(2*time.Minute)))
			s, e = status(t, id)
			assert.Equal(t, tc.want, rep{s, e})
			assert.Zero(t, kept(t, sid))
		})
	}

	t.Run("a known message takes the report at once", func(t *testing.T) {
		id := queue(t)
		require.NoError(t, store.SMSResult(ctx, id, "SMknownearly", nil, t0))
		require.NoError(t, store.SMSEarlyDelivery(ctx, "twilio", "SMknownearly", "delivered", "", t0, t0.Add(time.Minute), maxKept))
		s, _ := status(t, id)
		assert.Equal(t, "delivered", s)
		assert.Zero(t, kept(t, "SMknownearly"))
	})

	t.Run("an expired report is not applied", func(t *testing.T) {
		id := queue(t)
		require.NoError(t, store.SMSEarlyDelivery(ctx, "twilio", "SMlate", "undelivered", "", t0, t0.Add(time.Minute), maxKept))
		require.NoError(t, store.SMSResult(ctx, id, "SMlate", nil, t0.Add(2*time.Minute)))
		s, _ := status(t, id)
		assert.Equal(t, "sent", s)
		assert.Zero(t, kept(t, "SMlate"))
	})

	t.Run("the same send recorded again keeps its status", func(t *testing.T) {
		id := queue(t)
		require.NoError(t, store.SMSResult(ctx, id, "SMtwice", nil, t0))
		require.NoError(t, store.SMSDelivery(ctx, "twilio", "SMtwice", "delivered", "", t0.Add(time.Second)))
		require.NoError(t, store.SMSResult(ctx, id, "SMtwice", nil, t0.Add(time.Minute)))
		s, _ := status(t, id)
		assert.Equal(t, "delivered", s)
	})

	t.Run("unknown status", func(t *testing.T) {
		err := store.SMSEarlyDelivery(ctx, "twilio", "SMx", "queued", "", t0, t0.Add(time.Minute), maxKept)
		assert.Equal(t, apperr.Invalid, apperr.CodeOf(err), "%v", err)
	})
}

func TestSMSEarlyReportsAreBounded(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keep := func(sid, status string, at time.Time) error {
		return store.SMSEarlyDelivery(ctx, "twilio", sid, status, "", at, at.Add(10*time.Minute), 2)
	}
	count := func() int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `select count(*) from sms_early_reports`).Scan(&n))
		return n
	}

	require.NoError(t, keep("SMa", "sent", t0))
	require.NoError(t, keep("SMb", "sent", t0.Add(time.Minute)))
	err := keep("SMc", "delivered", t0.Add(2*time.Minute))
	assert.Equal(t, apperr.RateLimited, apperr.CodeOf(err), "%v", err)
	assert.Equal(t, 2, count())
	require.NoError(t, keep("SMa", "delivered", t0.Add(3*time.Minute)), "a kept id takes further reports when full")
	var st string
	require.NoError(t, db.Pool.QueryRow(ctx, `select status from sms_early_reports where provider_id = 'SMa'`).Scan(&st))
	assert.Equal(t, "delivered", st)

	// Once SMa has expired it makes room; SMb is still kept.
	require.NoError(t, keep("SMc", "delivered", t0.Add(10*time.Minute)))
	assert.Equal(t, 2, count())
	rows, err := db.Pool.Query(ctx, `select provider_id from sms_early_reports order by provider_id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"SMb", "SMc"}, ids)
}

// TestSMSReportRacesSendResult runs a report and the send result of the
// same message at once, many times: whichever comes first, the report is
// never lost.
func TestSMSReportRacesSendResult(t *testing.T) {
	ctx := context.Background()
	db := testenv.PostgresDB(t)
	store := &postgres.Payments{DB: db}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 40 {
		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `insert into sms_messages (to_e164, purpose, body, provider, created_at, updated_at)
			values ('+447700900123', 'notice', 'hello', 'twilio', $1, $1) returning id`, now).Scan(&id))
		sid := "SMrace" + strconv.Itoa(i)
		var wg sync.WaitGroup
		var reportErr, resultErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			reportErr = store.SMSDelivery(ctx, "twilio", sid, "delivered", "", now)
			if apperr.CodeOf(reportErr) == apperr.NotFound {
				reportErr = store.SMSEarlyDelivery(ctx, "twilio", sid, "delivered", "", now, now.Add(time.Minute), 100)
			}
		}()
		go func() {
			defer wg.Done()
			resultErr = store.SMSResult(ctx, id, sid, nil, now)
		}()
		wg.Wait()
		require.NoError(t, reportErr)
		require.NoError(t, resultErr)
		var st string
		require.NoError(t, db.Pool.QueryRow(ctx, `select status from sms_messages where id = $1`, id).Scan(&st))
		require.Equal(t, "delivered", st, "round %d", i)
	}
}
