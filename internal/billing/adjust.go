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

// billedNow is an earlier bill's register with the current total of the
// same meter over the same period.
type billedNow struct {
	BilledRegister
	current UsageRow
}

func (b billedNow) changed() bool { return b.current.Quantity != b.Quantity }

// findCorrections compares what the accounts' bills since since billed of
// each meter with the current totals of the same registers, and returns the
// registers by account. Only the quantity counts: an estimate replaced by a
// measurement of the same amount changes no money.
func (s *Service) findCorrections(ctx context.Context, accountIDs []int64, since time.Time) (map[int64][]billedNow, error) {
	regs, err := s.store.BilledRegisters(ctx, accountIDs, since)
	if err != nil {
		return nil, fmt.Errorf("load billed registers: %w", err)
	}
	if len(regs) == 0 {
		return nil, nil
	}
	qs := make([]UsageQuery, len(regs))
	for i, r := range regs {
		qs[i] = UsageQuery{MeterID: r.MeterID, Channel: r.Channel, From: r.Start, To: r.End, Mode: Total}
	}
	rows, err := s.store.Usage(ctx, qs)
	if err != nil {
		return nil, fmt.Errorf("load register totals: %w", err)
	}
	byAccount := map[int64][]billedNow{}
	changed := false
	for i, r := range regs {
		b := billedNow{BilledRegister: r}
		if len(rows[i]) > 0 {
			b.current = rows[i][0]
		}
		changed = changed || b.changed()
		byAccount[r.AccountID] = append(byAccount[r.AccountID], b)
	}
	if !changed {
		return nil, nil
	}
	return byAccount, nil
}

// adjustments reprices each (earlier bill, service point) whose registers
// changed, with the current usage and the tariff revisions the bill used,
// and returns adjustment lines for the difference from what was charged
// (the bill and its corrections so far), the corrected registers, and the
// number of corrections. A correction that cannot be priced is logged and
// left for a later run: it must not hold up the account's bill.
func (s *Service) adjustments(ctx context.Context, pc pricing, sps []ServicePoint, regs []billedNow) ([]Line, []Register, int) {
	type key struct{ bill, sp int64 }
	groups := map[key][]billedNow{}
	var keys []key
	for _, r := range regs {
		k := key{r.BillID, r.ServicePointID}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.bill != b.bill {
			return int(a.bill - b.bill)
		}
		return int(a.sp - b.sp)
	})
	var lines []Line
	var out []Register
	n := 0
	for _, k := range keys {
		g := groups[k]
		if !slices.ContainsFunc(g, billedNow.changed) {
			continue
		}
		l, r, err := s.correct(ctx, pc, sps, g)
		if err != nil {
			s.log.Warn("correction not billed yet", "account", pc.acc.ID, "bill", k.bill, "service_point", k.sp, "err", err)
			continue
		}
		lines = append(lines, l...)
		out = append(out, r...)
		n++
	}
	return lines, out, n
}

// correct reprices one earlier bill's service point.
func (s *Service) correct(ctx context.Context, pc pricing, sps []ServicePoint, g []billedNow) ([]Line, []Register, error) {
	first := g[0]
	billed, err := s.store.BilledCharges(ctx, first.BillID, first.ServicePointID)
	if err != nil {
		return nil, nil, fmt.Errorf("billed charges: %w", err)
	}
	var sp ServicePoint
	for _, x := range sps {
		if x.ID == first.ServicePointID {
			sp = x
		}
	}
	if sp.ID == 0 {
		return nil, nil, fmt.Errorf("service point %d is no longer on the account", first.ServicePointID)
	}
	// The meters the bill billed, on their grid.
	meters := make([]Meter, len(g))
	for i, r := range g {
		meters[i] = Meter{ID: r.MeterID, Interval: 15 * time.Minute}
		for _, m := range sp.Meters {
			if m.ID == r.MeterID {
				meters[i].Interval = m.Interval
			}
		}
	}
	p := period{From: first.PeriodStart, To: first.PeriodEnd, Cycle: CycleAt(first.PeriodStart.Start(pc.loc), pc.loc, pc.acc.AnchorDay)}
	mode := billMode(sp, p.From, p.To, pc.tariffs, billed.Revisions)
	qs := make([]UsageQuery, len(meters))
	for i, m := range meters {
		qs[i] = UsageQuery{MeterID: m.ID, Channel: first.Channel, From: first.Start, To: first.End, TimeZone: pc.acc.TimeZone, Mode: queryMode(mode, m)}
	}
	rows, err := s.store.Usage(ctx, qs)
	if err != nil {
		return nil, nil, fmt.Errorf("load usage: %w", err)
	}
	u := buildUsage(sp, meters, rows, mode, first.Start, first.End, pc.loc)
	pc.revs = billed.Revisions
	repriced, err := pc.priceServicePoint(sp, p, u)
	if err != nil {
		return nil, nil, err
	}
	sub, tax := sums(repriced)
	dSub, dTax := sub.Sub(billed.Subtotal), tax.Sub(billed.Tax)

	var was, now meter.Value
	var ids []string
	for _, r := range g {
		was += r.Quantity
		ids = append(ids, r.MeterID)
	}
	for _, r := range u.registers {
		now += r.Quantity
	}
	minor, _ := tariff.MinorUnits(pc.acc.Currency)
	unit := ""
	if info, ok := meter.Lookup(first.Channel); ok {
		unit = " " + info.Unit
	}
	base := Line{
		ServicePointID: sp.ID, Utility: sp.Utility, Quantity: decimal.NewFromInt(1), Unit: "correction",
		Meters: ids, Channel: first.Channel, MeteredQuantity: now, AdjustsBillID: first.BillID,
		Estimated: u.estimated > 0 || u.missing() > 0,
	}
	for _, r := range u.registers {
		base.FirstInterval, base.LastInterval = minTime(base.FirstInterval, r.FirstInterval), maxTime(base.LastInterval, r.LastInterval)
	}
	if len(repriced) > 0 {
		base.TariffCode, base.TariffRevision, base.TariffVersion = repriced[0].TariffCode, repriced[0].TariffRevision, repriced[0].TariffVersion
	}
	l := base
	l.Kind = KindAdjustment
	l.Description = fmt.Sprintf("Correction to bill %d (%s to %s), %s: %s%s billed, %s%s metered now; charges were %s, now %s",
		first.BillID, first.PeriodStart, first.PeriodEnd.AddDays(-1), sp.Utility, was, unit, now, unit,
		billed.Subtotal.StringFixed(minor), sub.StringFixed(minor))
	l.UnitPrice, l.Amount = dSub, dSub
	lines := []Line{l}
	if !dTax.IsZero() {
		t := base
		t.Kind = KindAdjustmentTax
		t.Description = fmt.Sprintf("Tax on the correction to bill %d: was %s, now %s", first.BillID, billed.Tax.StringFixed(minor), tax.StringFixed(minor))
		t.UnitPrice, t.Amount = dTax, dTax
		lines = append(lines, t)
	}
	var regs []Register
	for _, r := range u.registers {
		for _, b := range g {
			if b.MeterID == r.MeterID && b.changed() {
				r.AdjustsBillID = first.BillID
				regs = append(regs, r)
			}
		}
	}
	return lines, regs, nil
}
