package payment

import (
	"context"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/outbox"
)

// Outbox event kinds auto-pay acts on (written by billing).
const (
	EventBillIssued   = "bill.issued"
	EventAccruedAbove = "accrued.above"
	EventBalanceBelow = "balance.below"
)

var eventTrigger = map[string]Trigger{
	EventBillIssued:   TriggerBillIssued,
	EventAccruedAbove: TriggerAccruedAbove,
	EventBalanceBelow: TriggerBalanceBelow,
}

// autopayEvent is what auto-pay reads of an event's payload.
type autopayEvent struct {
	AccountID   int64  `json:"account_id"`
	BillID      int64  `json:"bill_id"`
	Currency    string `json:"currency"`
	Total       string `json:"total"`   // bill.issued
	Accrued     string `json:"accrued"` // accrued.above
	HouseholdID int64  `json:"household_id"`
}

// HandleAutopayEvent is the outbox consumer of auto-pay: for a bill issued,
// an accrued cost above its threshold or a prepaid balance below it, the
// account's enabled rule for that trigger creates a payment and sends its
// code (or, for a top-up the household allowed without a code, charges it).
// Every payment's idempotency key is the rule and the event, so a redelivered
// event creates nothing new; a payment created but not yet sent a code (a
// crash in between) is sent one on redelivery.
func (st *Setup) HandleAutopayEvent(ctx context.Context, e outbox.Event) error {
	trig, ok := eventTrigger[e.Kind]
	if !ok {
		return nil
	}
	rule, ok, err := st.store.ActiveRule(ctx, e.AccountID, trig)
	if err != nil || !ok {
		return err
	}
	var ev autopayEvent
	if err := e.Decode(&ev); err != nil {
		return outbox.Permanent(err)
	}
	if ev.Currency != "" && ev.Currency != rule.Currency {
		return outbox.Permanent(fmt.Errorf("event %s in %s, account in %s", e.Key, ev.Currency, rule.Currency))
	}
	n := NewPayment{
		HouseholdID: rule.HouseholdID, AccountID: rule.AccountID, AutoPayRuleID: rule.ID, Currency: rule.Currency,
		Payee: st.s.cfg.Payee, PaymentMethodID: rule.PaymentMethodID,
		IdempotencyKey: fmt.Sprintf("autopay:%d:%s", rule.ID, e.Key),
	}
	amount := func(s, field string) (decimal.Decimal, error) {
		d, err := decimal.NewFromString(s)
		if err != nil {
			return d, outbox.Permanent(fmt.Errorf("event %s: %s %q: %w", e.Key, field, s, err))
		}
		return d, nil
	}
	switch trig {
	case TriggerBillIssued:
		n.Kind, n.BillID = KindBill, ev.BillID
		if n.Amount, err = amount(ev.Total, "total"); err != nil {
			return err
		}
	case TriggerAccruedAbove:
		n.Kind = KindAccrued
		if n.Amount, err = amount(ev.Accrued, "accrued"); err != nil {
			return err
		}
	case TriggerBalanceBelow:
		n.Kind, n.Amount = KindTopUp, rule.TopUpAmount
		// A household may allow small top-ups without a code; never above
		// its cap.
		n.SkipOTP = rule.OTPFreeBelow.IsPositive() && !n.Amount.GreaterThan(rule.OTPFreeBelow) && !n.Amount.GreaterThan(rule.MaxAmount)
	}
	if !n.Amount.IsPositive() {
		st.s.log.Info("auto-pay: nothing to pay", "event", e.Key, "amount", n.Amount)
		return nil
	}
	p, err := st.s.Create(ctx, n)
	if err != nil {
		if apperr.CodeOf(err) == apperr.Conflict || apperr.CodeOf(err) == apperr.Invalid {
			// The bill is being paid another way, or the method was
			// removed: nothing auto-pay can do. The household sees the
			// bill in the portal.
			st.s.log.Warn("auto-pay payment not created", "event", e.Key, "rule", rule.ID, "err", err)
			return nil
		}
		return err
	}
	if p.State != Created {
		return nil
	}
	if err := st.s.Start(ctx, p.ID); err != nil {
		if apperr.CodeOf(err) == apperr.Conflict || apperr.CodeOf(err) == apperr.RateLimited {
			// No verified phone, or the household's codes are locked today:
			// the payment waits in the portal and expires if unconfirmed.
			st.s.log.Warn("auto-pay payment waits for the household", "payment", p.ID, "err", err)
			return nil
		}
		return err
	}
	return nil
}

// Start moves a new payment on: it sends the code, or, for a payment its
// rule allowed without one, confirms and charges it.
func (s *Service) Start(ctx context.Context, id int64) error {
	p, err := s.store.Payment(ctx, id)
	if err != nil {
		return err
	}
	if p.RequiresOTP {
		return s.SendCode(ctx, id)
	}
	err = s.store.Update(ctx, id, func(_ Tx, p *Payment) error {
		if p.State != Created {
			return nil
		}
		return p.move(Confirmed, s.Now())
	})
	if err != nil {
		return err
	}
	_, err = s.charge(ctx, id)
	return err
}

// BillPoster posts issued bills to the ledger.
type BillPoster interface {
	PostBill(ctx context.Context, billID int64) (bool, error)
}

// PostBillHandler is the outbox consumer that posts each issued bill to the
// ledger (the household owes its total) once.
func PostBillHandler(p BillPoster) outbox.Handler {
	return func(ctx context.Context, e outbox.Event) error {
		if e.Kind != EventBillIssued {
			return nil
		}
		var ev autopayEvent
		if err := e.Decode(&ev); err != nil || ev.BillID == 0 {
			return outbox.Permanent(fmt.Errorf("event %s: no bill: %v", e.Key, err))
		}
		_, err := p.PostBill(ctx, ev.BillID)
		return err
	}
}
