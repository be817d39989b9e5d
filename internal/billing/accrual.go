package billing

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// accrualOverlap widens the "changed since the last run" window: an ingest
// transaction stamps updated_at when it starts and may commit after an
// accrual run has looked, so each run looks back this far again.
// Re-accruing an account is idempotent, so the overlap costs only time.
const accrualOverlap = 5 * time.Minute

// UpdateAccruals recomputes the cost so far of the running cycle, per
// account and utility, for every account whose usage changed since the last
// run or whose accrual is not of today (standing charges accrue daily), and
// records threshold events in the same transaction as the accruals.
//
// The cost so far prices the cycle's days through today, today's usage so
// far included, with tariff.Accrue (each day its pro-rata share of the
// cycle's bill). The projected cost at the end of the cycle is the cost so
// far plus the average daily cost of the last Config.ForecastDays full days
// times the days left; standing charges are per day, so they project
// exactly.
func (s *Service) UpdateAccruals(ctx context.Context) (AccrualSummary, error) {
	var sum AccrualSummary
	now := s.Now()
	ts, err := s.loadTariffs(ctx)
	if err != nil {
		return sum, err
	}
	today := tariff.DateOf(now)
	cvs, err := s.store.CalorificValues(ctx, today.AddDays(-40), today.AddDays(2))
	if err != nil {
		return sum, fmt.Errorf("load calorific values: %w", err)
	}
	runID, since, watermark, err := s.store.StartAccrualRun(ctx)
	if err != nil {
		return sum, fmt.Errorf("start accrual run: %w", err)
	}
	sum.RunID = runID
	changedSince := time.Time{}
	if !since.IsZero() {
		changedSince = since.Add(-accrualOverlap)
	}
	var after int64
	for {
		accs, err := s.store.AccrualAccounts(ctx, changedSince, now, after, s.cfg.BatchSize)
		if err != nil {
			return sum, fmt.Errorf("accrual accounts after %d: %w", after, err)
		}
		if len(accs) == 0 {
			break
		}
		after = accs[len(accs)-1].ID
		accruals, events, failed, err := s.accrueBatch(ctx, now, ts, cvs, accs)
		if err != nil {
			return sum, err
		}
		n, err := s.store.SaveAccruals(ctx, accruals, events)
		if err != nil {
			return sum, fmt.Errorf("save accruals: %w", err)
		}
		sum.Accounts += len(accs)
		sum.Accruals += len(accruals)
		sum.Events += n
		sum.Failed += failed
	}
	if err := s.store.FinishAccrualRun(ctx, runID, watermark, sum.Accounts, sum.Events); err != nil {
		return sum, fmt.Errorf("finish accrual run: %w", err)
	}
	s.log.Info("accruals updated", "run", runID, "accounts", sum.Accounts, "accruals", sum.Accruals, "events", sum.Events, "failed", sum.Failed)
	return sum, nil
}

// accrueBatch computes the accruals of a batch of accounts and the
// threshold events they cross.
func (s *Service) accrueBatch(ctx context.Context, now time.Time, ts tariffSet, cvs map[tariff.Date]decimal.Decimal, accs []Account) ([]Accrual, []Event, int, error) {
	ids := make([]int64, len(accs))
	for i, a := range accs {
		ids[i] = a.ID
	}
	all, err := s.store.ServicePoints(ctx, ids)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("load service points: %w", err)
	}
	byAccount := map[int64][]ServicePoint{}
	for _, sp := range all {
		byAccount[sp.AccountID] = append(byAccount[sp.AccountID], sp)
	}
	budgets, thresholds, err := s.store.Thresholds(ctx, ids)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("load thresholds: %w", err)
	}

	type work struct {
		acc   Account
		loc   *time.Location
		p     period
		today tariff.Date
		sps   []spWork
	}
	var ws []work
	var qs []UsageQuery
	failed := 0
	for _, a := range accs {
		loc, err := s.location(a.TimeZone)
		if err != nil {
			s.log.Error("account not accrued", "account", a.ID, "err", err)
			failed++
			continue
		}
		cycle := CycleAt(now, loc, a.AnchorDay)
		today := tariff.DateOf(now.In(loc))
		p := period{From: cycle.Start, To: today.AddDays(1), Cycle: cycle}
		if !a.BillingFrom.IsZero() && a.BillingFrom.After(p.From) {
			p.From = a.BillingFrom
		}
		if !p.From.Before(p.To) {
			continue // not yet billed from
		}
		w := work{acc: a, loc: loc, p: p, today: today}
		from, to := p.From.Start(loc), p.To.Start(loc)
		for _, sp := range byAccount[a.ID] {
			x := spWork{sp: sp, mode: usageMode(sp, p.From, p.To, ts, nil), first: len(qs)}
			for _, m := range sp.Meters {
				qs = append(qs, UsageQuery{MeterID: m.ID, Channel: meter.PrimaryRegister(sp.Utility), From: from, To: to, TimeZone: a.TimeZone, Mode: queryMode(x.mode, m)})
			}
			w.sps = append(w.sps, x)
		}
		ws = append(ws, w)
	}
	rows, err := s.store.Usage(ctx, qs)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("load usage: %w", err)
	}

	var accruals []Accrual
	var events []Event
	for _, w := range ws {
		pc := pricing{acc: w.acc, loc: w.loc, tariffs: ts, cvs: cvs, cv: s.cfg.DefaultCalorificValue}
		minor, _ := tariff.MinorUnits(w.acc.Currency)
		byUtility := map[meter.Utility]*Accrual{}
		var order []meter.Utility
		var err error
		for _, x := range w.sps {
			u := buildUsage(x.sp, x.sp.Meters, rows[x.first:x.first+len(x.sp.Meters)], x.mode, w.p.From.Start(w.loc), w.p.To.Start(w.loc), w.loc)
			var lines []Line
			lines, err = pc.priceServicePoint(x.sp, w.p, u)
			if err != nil {
				break
			}
			if len(lines) == 0 {
				continue
			}
			sub, tax := sums(lines)
			amount := sub.Add(tax)
			// The forecast: the average daily cost of the last full days.
			full := w.p.From.DaysUntil(w.today)
			k := min(s.cfg.ForecastDays, full)
			daily := amount // no full day yet: today so far stands for a day
			if k > 0 {
				win := period{From: w.today.AddDays(-k), To: w.today, Cycle: w.p.Cycle}
				wl, werr := pc.priceServicePoint(x.sp, win, u)
				if werr != nil {
					err = werr
					break
				}
				ws, wt := sums(wl)
				daily = ws.Add(wt).Div(decimal.NewFromInt(int64(k)))
			}
			left := w.p.To.DaysUntil(w.p.Cycle.End)
			projected := amount.Add(daily.Mul(decimal.NewFromInt(int64(left)))).Round(minor)

			a := byUtility[x.sp.Utility]
			if a == nil {
				a = &Accrual{AccountID: w.acc.ID, Utility: x.sp.Utility, CycleStart: w.p.Cycle.Start, CycleEnd: w.p.Cycle.End,
					Through: w.p.To, Currency: w.acc.Currency, Amount: decimal.Zero, Projected: decimal.Zero, UpdatedAt: now}
				byUtility[x.sp.Utility] = a
				order = append(order, x.sp.Utility)
			}
			a.Amount = a.Amount.Add(amount)
			a.Projected = a.Projected.Add(projected)
			for _, r := range u.registers {
				a.Quantity += r.Quantity
			}
			a.Estimated = a.Estimated || u.estimated > 0 || u.missing() > 0
		}
		if err != nil {
			s.log.Error("account not accrued", "account", w.acc.ID, "number", w.acc.Number, "err", err)
			failed++
			continue
		}
		total := decimal.Zero
		for _, u := range order {
			accruals = append(accruals, *byUtility[u])
			total = total.Add(byUtility[u].Amount)
		}
		events = append(events, thresholdEvents(w.acc, w.p.Cycle, now, minor, byUtility, total, budgets, thresholds)...)
	}
	return accruals, events, failed, nil
}

// thresholdEvents returns an event for every threshold the account's
// accruals have crossed this cycle. Each event's key names the threshold and
// the cycle, so recording it again (the next accrual run) changes nothing.
func thresholdEvents(acc Account, c Cycle, now time.Time, minor int32, byUtility map[meter.Utility]*Accrual, total decimal.Decimal,
	budgets []Budget, thresholds []Thresholds) []Event {
	var out []Event
	base := func(kind, key string, payload map[string]any) Event {
		payload["account_id"] = acc.ID
		payload["cycle_start"] = c.Start.String()
		payload["cycle_end"] = c.End.String()
		payload["currency"] = acc.Currency
		return Event{Key: key, Kind: kind, AccountID: acc.ID, OccurredAt: now, Payload: payload}
	}
	for _, b := range budgets {
		if b.AccountID != acc.ID {
			continue
		}
		spent := total
		if b.Scope != BudgetScopeAccount {
			a := byUtility[meter.Utility(b.Scope)]
			if a == nil {
				continue
			}
			spent = a.Amount
		}
		pcts := slices.Clone(b.Percents)
		slices.Sort(pcts)
		for _, pct := range pcts {
			limit := b.Amount.Mul(decimal.NewFromInt(int64(pct))).Div(decimal.NewFromInt(100))
			if spent.LessThan(limit) {
				break
			}
			out = append(out, base(EventBudgetCrossed,
				fmt.Sprintf("%s:%d:%s:%d:%s", EventBudgetCrossed, acc.ID, b.Scope, pct, c.Start),
				map[string]any{"scope": b.Scope, "percent": pct, "budget": b.Amount.StringFixed(minor), "accrued": spent.StringFixed(minor)}))
		}
	}
	for _, t := range thresholds {
		if t.AccountID != acc.ID {
			continue
		}
		if t.AccruedAbove != nil && total.GreaterThan(*t.AccruedAbove) {
			out = append(out, base(EventAccruedAbove,
				fmt.Sprintf("%s:%d:%s:%s", EventAccruedAbove, acc.ID, t.AccruedAbove.StringFixed(minor), c.Start),
				map[string]any{"threshold": t.AccruedAbove.StringFixed(minor), "accrued": total.StringFixed(minor)}))
		}
		if t.BalanceBelow != nil && t.Balance != nil {
			available := t.Balance.Sub(total)
			if available.LessThan(*t.BalanceBelow) {
				out = append(out, base(EventBalanceBelow,
					fmt.Sprintf("%s:%d:%s:%s", EventBalanceBelow, acc.ID, t.BalanceBelow.StringFixed(minor), c.Start),
					map[string]any{"threshold": t.BalanceBelow.StringFixed(minor), "balance": t.Balance.StringFixed(minor),
						"accrued": total.StringFixed(minor), "available": available.StringFixed(minor)}))
			}
		}
	}
	return out
}
