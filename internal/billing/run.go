package billing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// job is one account with the periods a run bills for it.
type job struct {
	acc     Account
	loc     *time.Location
	periods []period
}

// batchResult is what billing one batch did.
type batchResult struct {
	accounts, issued, already, nothing, failed, adjustments int
	failedAccounts                                          []int64
}

// RunBills bills every account whose cycle has ended as of asOf (zero: now),
// from the billing registers in the store. Accounts are read in id order
// and billed in batches by Config.Workers workers; progress, if not nil, is
// called from one goroutine with the accounts done so far and the total.
//
// A run is idempotent: an account and period billed before (by this or a
// concurrent run) is skipped, so running again issues nothing new. An
// account that cannot be priced (no tariff, a tariff in another currency,
// usage the tariff cannot price) fails alone: it is logged, counted and
// billed by a later run once fixed; the run's outcome is then "partial".
// A store failure stops the run with outcome "failed".
func (s *Service) RunBills(ctx context.Context, asOf time.Time, progress func(done, total int)) (RunSummary, error) {
	started := s.Now()
	if asOf.IsZero() {
		asOf = started
	}
	sum := RunSummary{AsOf: asOf, Started: started}
	total, err := s.store.CountAccounts(ctx)
	if err != nil {
		return sum, fmt.Errorf("count accounts: %w", err)
	}
	ts, err := s.loadTariffs(ctx)
	if err != nil {
		return sum, err
	}
	cvs, err := s.store.CalorificValues(ctx, tariff.DateOf(asOf).AddDays(-400), tariff.DateOf(asOf).AddDays(2))
	if err != nil {
		return sum, fmt.Errorf("load calorific values: %w", err)
	}
	if sum.RunID, err = s.store.StartBillRun(ctx, asOf, started); err != nil {
		return sum, fmt.Errorf("start bill run: %w", err)
	}
	log := s.log.With("run", sum.RunID)
	log.Info("bill run started", "as_of", asOf, "accounts", total)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan []job)
	results := make(chan batchResult)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				r, err := s.billBatch(ctx, sum.RunID, asOf, ts, cvs, b)
				if err != nil {
					cancel(err)
					r = batchResult{accounts: len(b)}
				}
				select {
				case results <- r:
				case <-ctx.Done():
				}
			}
		}()
	}
	go func() {
		defer close(batches)
		if err := s.produce(ctx, asOf, batches, results); err != nil {
			cancel(err)
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	done := 0
	for r := range results {
		sum.Accounts += r.accounts
		sum.BillsIssued += r.issued
		sum.AlreadyBilled += r.already
		sum.NothingToBill += r.nothing
		sum.Failed += r.failed
		sum.Adjustments += r.adjustments
		sum.FailedAccounts = append(sum.FailedAccounts, r.failedAccounts...)
		done += r.accounts
		if progress != nil {
			progress(done, max(total, done))
		}
	}
	runErr := context.Cause(ctx)
	sum.Finished = s.Now()
	switch {
	case runErr != nil:
		sum.Outcome, sum.Error = "failed", runErr.Error()
	case sum.Failed > 0:
		sum.Outcome = "partial"
	default:
		sum.Outcome = "succeeded"
	}
	// Record the end even when the run's context was cancelled.
	if err := s.store.FinishBillRun(context.WithoutCancel(ctx), sum); err != nil {
		return sum, errors.Join(runErr, fmt.Errorf("finish bill run: %w", err))
	}
	log.Info("bill run finished", "outcome", sum.Outcome, "accounts", sum.Accounts, "issued", sum.BillsIssued,
		"already_billed", sum.AlreadyBilled, "nothing_to_bill", sum.NothingToBill, "failed", sum.Failed,
		"adjustments", sum.Adjustments, "took", sum.Finished.Sub(sum.Started))
	if runErr != nil {
		return sum, fmt.Errorf("bill run %d: %w", sum.RunID, runErr)
	}
	return sum, nil
}

// produce pages through the accounts, works out each one's due periods and
// sends batches of accounts with something due. Accounts with nothing due
// are reported straight to results, so progress covers every account.
func (s *Service) produce(ctx context.Context, asOf time.Time, batches chan<- []job, results chan<- batchResult) error {
	var after int64
	page := max(s.cfg.BatchSize*4, 1000)
	var batch []job
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case batches <- batch:
			batch = nil
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for {
		accs, err := s.store.Accounts(ctx, after, page)
		if err != nil {
			return fmt.Errorf("list accounts after %d: %w", after, err)
		}
		if len(accs) == 0 {
			return send()
		}
		skipped := batchResult{}
		for _, a := range accs {
			after = a.ID
			loc, err := s.location(a.TimeZone)
			if err != nil {
				s.log.Error("account not billed", "account", a.ID, "err", err)
				skipped.accounts++
				skipped.failed++
				skipped.failedAccounts = append(skipped.failedAccounts, a.ID)
				continue
			}
			ps := duePeriods(a, loc, asOf, s.cfg.MaxCatchUp)
			if len(ps) == 0 {
				skipped.accounts++
				skipped.already++
				continue
			}
			batch = append(batch, job{acc: a, loc: loc, periods: ps})
			if len(batch) >= s.cfg.BatchSize {
				if err := send(); err != nil {
					return err
				}
			}
		}
		if skipped.accounts > 0 {
			select {
			case results <- skipped:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
}

// spWork is one service point of one job's period with the usage queries
// for its meters.
type spWork struct {
	sp    ServicePoint
	mode  UsageMode
	first int // index of its first meter's query
}

// billBatch bills one batch of accounts: one query for their service
// points, one for their usage, one for their earlier bills' registers (and
// one for those registers' current totals), one COPY of the bills.
func (s *Service) billBatch(ctx context.Context, runID int64, asOf time.Time, ts tariffSet, cvs map[tariff.Date]decimal.Decimal, jobs []job) (batchResult, error) {
	res := batchResult{accounts: len(jobs)}
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.acc.ID
	}
	all, err := s.store.ServicePoints(ctx, ids)
	if err != nil {
		return res, fmt.Errorf("load service points: %w", err)
	}
	byAccount := map[int64][]ServicePoint{}
	for _, sp := range all {
		byAccount[sp.AccountID] = append(byAccount[sp.AccountID], sp)
	}

	// Usage of every service point of every period, in one query.
	var qs []UsageQuery
	work := make([][][]spWork, len(jobs)) // job, period, service point
	since := asOf
	for i, j := range jobs {
		work[i] = make([][]spWork, len(j.periods))
		for k, p := range j.periods {
			from, to := p.From.Start(j.loc), p.To.Start(j.loc)
			if k == 0 {
				since = minTime(since, from.Add(-s.cfg.AdjustmentWindow))
			}
			for _, sp := range byAccount[j.acc.ID] {
				w := spWork{sp: sp, mode: billMode(sp, p.From, p.To, ts, nil), first: len(qs)}
				for _, m := range sp.Meters {
					qs = append(qs, UsageQuery{MeterID: m.ID, Channel: meter.PrimaryRegister(sp.Utility), From: from, To: to, TimeZone: j.acc.TimeZone, Mode: queryMode(w.mode, m)})
				}
				work[i][k] = append(work[i][k], w)
			}
		}
	}
	rows, err := s.store.Usage(ctx, qs)
	if err != nil {
		return res, fmt.Errorf("load usage: %w", err)
	}

	corrections, err := s.findCorrections(ctx, ids, since)
	if err != nil {
		return res, err
	}

	issuedAt := s.Now()
	var bills []*Bill
	cvMeans := map[[2]tariff.Date]decimal.Decimal{}
	for i, j := range jobs {
		pc := pricing{acc: j.acc, loc: j.loc, tariffs: ts, cvs: cvs, cv: s.cfg.DefaultCalorificValue, cvMeans: cvMeans}
		var accBills []*Bill
		var failed error
		for k, p := range j.periods {
			b := &Bill{
				AccountID: j.acc.ID, AccountNumber: j.acc.Number, HouseholdID: j.acc.HouseholdID, HouseholdName: j.acc.HouseholdName,
				PeriodStart: p.From, PeriodEnd: p.To, StartAt: p.From.Start(j.loc), EndAt: p.To.Start(j.loc),
				TimeZone: j.acc.TimeZone, Currency: j.acc.Currency, Status: Issued, IssuedAt: issuedAt,
				DueDate: tariff.DateOf(issuedAt.In(j.loc)).AddDays(s.cfg.DueDays), RunID: runID,
			}
			for _, w := range work[i][k] {
				u := buildUsage(w.sp, w.sp.Meters, rows[w.first:w.first+len(w.sp.Meters)], w.mode, b.StartAt, b.EndAt, j.loc)
				lines, err := pc.priceServicePoint(w.sp, p, u)
				if err != nil {
					failed = err
					break
				}
				if len(lines) == 0 {
					continue
				}
				b.Lines = append(b.Lines, lines...)
				b.Registers = append(b.Registers, u.registers...)
				b.MissingIntervals += u.missing()
				b.Estimated = b.Estimated || u.estimated > 0 || u.missing() > 0
			}
			if failed != nil {
				break
			}
			if k == 0 {
				adj, regs, n := s.adjustments(ctx, pc, byAccount[j.acc.ID], corrections[j.acc.ID])
				b.Lines = append(b.Lines, adj...)
				b.Registers = append(b.Registers, regs...)
				res.adjustments += n
			}
			if len(b.Lines) == 0 {
				continue
			}
			for n := range b.Lines {
				b.Lines[n].No = n + 1
				b.Estimated = b.Estimated || b.Lines[n].Estimated
			}
			b.Subtotal, b.Tax = sums(b.Lines)
			b.Total = b.Subtotal.Add(b.Tax)
			accBills = append(accBills, b)
		}
		switch {
		case failed != nil:
			s.log.Error("account not billed", "run", runID, "account", j.acc.ID, "number", j.acc.Number, "err", failed)
			res.failed++
			res.failedAccounts = append(res.failedAccounts, j.acc.ID)
		case len(accBills) == 0:
			res.nothing++
		default:
			bills = append(bills, accBills...)
		}
	}
	if len(bills) == 0 {
		return res, nil
	}

	billIDs, err := s.store.NextBillIDs(ctx, len(bills))
	if err != nil {
		return res, fmt.Errorf("reserve bill ids: %w", err)
	}
	events := make([]Event, len(bills))
	for i, b := range bills {
		b.ID = billIDs[i]
		events[i] = billIssuedEvent(b)
	}
	issued, err := s.store.IssueBills(ctx, bills, events)
	if err != nil {
		return res, fmt.Errorf("issue bills: %w", err)
	}
	res.issued = len(issued)
	res.already += len(bills) - len(issued)
	if len(issued) < len(bills) {
		// Another run issued some of these first: their adjustments went
		// with them and are not counted here.
		got := map[int64]bool{}
		for _, id := range issued {
			got[id] = true
		}
		for _, b := range bills {
			if !got[b.ID] {
				for _, l := range b.Lines {
					if l.Kind == KindAdjustment {
						res.adjustments--
					}
				}
			}
		}
	}
	return res, nil
}

func billIssuedEvent(b *Bill) Event {
	minor, _ := tariff.MinorUnits(b.Currency)
	return Event{
		Key:        fmt.Sprintf("%s:%d", EventBillIssued, b.ID),
		Kind:       EventBillIssued,
		AccountID:  b.AccountID,
		OccurredAt: b.IssuedAt,
		BillID:     b.ID,
		Payload: map[string]any{
			"bill_id":      b.ID,
			"account_id":   b.AccountID,
			"period_start": b.PeriodStart.String(),
			"period_end":   b.PeriodEnd.String(),
			"currency":     b.Currency,
			"total":        b.Total.StringFixed(minor),
			"due_date":     b.DueDate.String(),
			"estimated":    b.Estimated,
		},
	}
}
