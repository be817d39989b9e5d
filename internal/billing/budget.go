package billing

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/meter"
	"github.com/meterflow/meterflow/internal/tariff"
)

// DefaultBudgetPercents are the percentages of a budget that notify when a
// budget names none.
var DefaultBudgetPercents = []int{50, 80, 100}

// Budget limits: percentages of a budget from 1 to 200, at most 10 of
// them, and amounts below maxBudget.
const (
	MinBudgetPercent = 1
	MaxBudgetPercent = 200
	maxBudgetPercent = 10
)

var maxBudget = decimal.New(1, 9)

// ValidateBudgets checks an account's budgets: one per scope at most
// ("account" or a utility), each a positive amount in the currency's minor
// unit, with 1 to 10 percentages from 1 to 200 in increasing order. Every
// problem is reported, each naming its field (budgets[i].amount, ...).
func ValidateBudgets(currency string, bs []Budget) error {
	minor, ok := tariff.MinorUnits(currency)
	if !ok {
		return fmt.Errorf("budgets: account currency %q has no known minor unit", currency)
	}
	var errs []error
	seen := map[string]bool{}
	for i, b := range bs {
		f := func(name string) string { return fmt.Sprintf("budgets[%d].%s", i, name) }
		switch {
		case b.Scope != BudgetScopeAccount && !meter.Utility(b.Scope).Valid():
			errs = append(errs, apperr.Field(f("scope"), "want account, electricity, water or gas"))
		case seen[b.Scope]:
			errs = append(errs, apperr.Field(f("scope"), "%s has a budget already", b.Scope))
		}
		seen[b.Scope] = true
		switch {
		case !b.Amount.IsPositive():
			errs = append(errs, apperr.Field(f("amount"), "must be positive"))
		case !b.Amount.LessThan(maxBudget):
			errs = append(errs, apperr.Field(f("amount"), "must be less than %s", maxBudget))
		case !b.Amount.Equal(b.Amount.Truncate(minor)):
			errs = append(errs, apperr.Field(f("amount"), "at most %d decimals in %s", minor, currency))
		}
		if len(b.Percents) == 0 || len(b.Percents) > maxBudgetPercent {
			errs = append(errs, apperr.Field(f("percents"), "want 1 to %d percentages", maxBudgetPercent))
			continue
		}
		for j, p := range b.Percents {
			switch {
			case p < MinBudgetPercent || p > MaxBudgetPercent:
				errs = append(errs, apperr.Field(fmt.Sprintf("budgets[%d].percents[%d]", i, j), "want %d to %d", MinBudgetPercent, MaxBudgetPercent))
			case j > 0 && p <= b.Percents[j-1]:
				errs = append(errs, apperr.Field(fmt.Sprintf("budgets[%d].percents[%d]", i, j), "percentages must increase, each once"))
			}
		}
	}
	return errors.Join(errs...)
}

// Budgets returns an account's budgets by scope.
func (s *Service) Budgets(ctx context.Context, accountID int64) ([]Budget, error) {
	bs, _, err := s.store.Thresholds(ctx, []int64{accountID})
	if err != nil {
		return nil, err
	}
	return bs, nil
}

// SetBudgets replaces an account's budgets with bs, after ValidateBudgets
// (a budget without percentages takes DefaultBudgetPercents). The next
// accrual run measures the cycle against them; percentages already crossed
// this cycle are not notified again.
func (s *Service) SetBudgets(ctx context.Context, accountID int64, currency string, bs []Budget) ([]Budget, error) {
	out := make([]Budget, len(bs))
	for i, b := range bs {
		b.AccountID = accountID
		if b.Percents == nil {
			b.Percents = slices.Clone(DefaultBudgetPercents)
		}
		out[i] = b
	}
	if err := ValidateBudgets(currency, out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Budget) int {
		switch {
		case a.Scope < b.Scope:
			return -1
		case a.Scope > b.Scope:
			return 1
		}
		return 0
	})
	if err := s.store.ReplaceBudgets(ctx, accountID, out); err != nil {
		return nil, err
	}
	return out, nil
}
