// Package smstest holds what tests of SMS senders share: the conformance
// suite every payment.Sender must pass (RunSenderSuite), and TwilioServer,
// an emulation of Twilio's Messages API that checks every request it gets.
package smstest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/payment"
)

// Message is a message as it reached the other side of a sender.
type Message struct {
	// ID is the id the sender returned for it.
	ID   string
	To   string
	Body string
}

// Inbox shows what a sender delivered.
type Inbox interface {
	// Messages returns the messages delivered to the number to, oldest
	// first.
	Messages(ctx context.Context, to string) ([]Message, error)
}

// RunSenderSuite checks the behaviour every payment.Sender must have.
// newSender returns a fresh sender and the inbox it delivers into; each
// case uses numbers of its own, so the inbox may be shared.
func RunSenderSuite(t *testing.T, newSender func(t *testing.T) (payment.Sender, Inbox)) {
	ctx := context.Background()
	inboxOf := func(t *testing.T, in Inbox, to string) []Message {
		t.Helper()
		msgs, err := in.Messages(ctx, to)
		require.NoError(t, err)
		return msgs
	}

	t.Run("delivers the exact text and returns its id", func(t *testing.T) {
		s, in := newSender(t)
		bodies := map[string]string{
			"+447700900101": "Your Meterflow code is 123456. It confirms payment 42 of 12.34 GBP.",
			"+447700900102": "Zahlung bestätigen: 12,34 €\nCode: 654321 ✓",
			"+447700900103": "form characters & = + % ? # / ; survive: a&b=c+d%20e",
			"+447700900104": strings.Repeat("0123456789", 40),
		}
		for to, body := range bodies {
			id, err := s.Send(ctx, to, body)
			require.NoError(t, err, to)
			require.NotEmpty(t, id, "a sent message has an id")
			got := inboxOf(t, in, to)
			require.Len(t, got, 1, to)
			assert.Equal(t, Message{ID: id, To: to, Body: body}, got[0])
		}
	})

	t.Run("every send is a new message", func(t *testing.T) {
		s, in := newSender(t)
		to := "+447700900111"
		a, err := s.Send(ctx, to, "same text")
		require.NoError(t, err)
		b, err := s.Send(ctx, to, "same text")
		require.NoError(t, err)
		assert.NotEqual(t, a, b, "two sends are two messages with two ids")
		got := inboxOf(t, in, to)
		require.Len(t, got, 2)
		assert.Equal(t, []string{a, b}, []string{got[0].ID, got[1].ID})
	})

	t.Run("refuses a number not in E.164", func(t *testing.T) {
		s, in := newSender(t)
		for _, to := range []string{"07700 900121", "07700900121", "+44 7700 900121", "447700900121", "+07700900121", "+4477009001212345", ""} {
			_, err := s.Send(ctx, to, "hello")
			require.Error(t, err, "%q", to)
			assert.Equal(t, apperr.Invalid, apperr.CodeOf(err), "%q: %v", to, err)
			assert.Empty(t, inboxOf(t, in, to), "%q: nothing is delivered", to)
		}
		assert.Empty(t, inboxOf(t, in, "+447700900121"), "nothing is delivered to the number meant either")
	})

	t.Run("refuses an empty text", func(t *testing.T) {
		s, in := newSender(t)
		to := "+447700900131"
		for _, body := range []string{"", "   ", "\n"} {
			_, err := s.Send(ctx, to, body)
			require.Error(t, err, "%q", body)
			assert.Equal(t, apperr.Invalid, apperr.CodeOf(err), "%q: %v", body, err)
		}
		assert.Empty(t, inboxOf(t, in, to))
	})

	t.Run("stops when the context is done", func(t *testing.T) {
		s, in := newSender(t)
		to := "+447700900141"
		done, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Send(done, to, "too late")
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Empty(t, inboxOf(t, in, to))
	})

	t.Run("safe for concurrent use", func(t *testing.T) {
		s, in := newSender(t)
		to := "+447700900151"
		const n = 16
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { ids[i], errs[i] = s.Send(ctx, to, fmt.Sprintf("message %d", i)) })
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := range n {
			require.NoError(t, errs[i])
			assert.False(t, seen[ids[i]], "ids are distinct")
			seen[ids[i]] = true
		}
		got := inboxOf(t, in, to)
		require.Len(t, got, n)
		bodies := map[string]string{}
		for _, m := range got {
			bodies[m.Body] = m.ID
		}
		for i := range n {
			assert.Equal(t, ids[i], bodies[fmt.Sprintf("message %d", i)], "message %d arrived once, under its id", i)
		}
	})
}
