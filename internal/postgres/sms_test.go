package postgres_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

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
