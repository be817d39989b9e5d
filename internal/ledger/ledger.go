// Package ledger owns the double-entry ledger: every movement of money
// Meterflow records is an Entry of Postings whose amounts (debits positive,
// credits negative) sum to zero in each currency. Entries are never changed;
// a correction is a new entry. The PostgreSQL store checks the same rule when
// each transaction commits (a deferred constraint trigger), and Check
// verifies a whole ledger (`meterflow ledger check`).
//
// Accounts are colon-separated names. The ones payments post to:
//
//	gateway_clearing             asset: money the gateway holds for us until payout
//	receivable:household:<id>    asset: what a household owes (bills debit it)
//	prepaid:account:<id>         liability: prepaid credit we owe an account
//	fees:gateway                 expense: what the gateway keeps of each charge
//	revenue                      income: the charges of issued bills
//	tax_payable                  liability: the tax of issued bills
package ledger

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/shopspring/decimal"
)

// Account names.
const (
	GatewayClearing = "gateway_clearing"
	// Revenue is income from issued bills' charges.
	Revenue = "revenue"
	// TaxPayable is the tax on issued bills, owed to the tax authority.
	TaxPayable = "tax_payable"
	// GatewayFees is the expense of the payment gateway's fees.
	GatewayFees = "fees:gateway"
)

// Receivable is the receivable account of a household.
func Receivable(householdID int64) string { return fmt.Sprintf("receivable:household:%d", householdID) }

// Prepaid is the prepaid-credit account of a billing account.
func Prepaid(accountID int64) string { return fmt.Sprintf("prepaid:account:%d", accountID) }

var accountName = regexp.MustCompile(`^[a-z_]+(:[a-z0-9_]+)*$`)

// Posting is one line of an entry: a debit (positive) or a credit
// (negative) of an account.
type Posting struct {
	Account  string
	Amount   decimal.Decimal
	Currency string
}

// Entry is a balanced set of postings. Key identifies the event it records
// (e.g. "payment:42"), so recording an event twice records it once.
type Entry struct {
	ID        int64
	Key       string
	Memo      string
	PaymentID int64
	PostedAt  time.Time
	Postings  []Posting
}

// Transfer returns an entry that debits one account and credits another by
// amount.
func Transfer(key, memo string, at time.Time, debit, credit string, amount decimal.Decimal, currency string) Entry {
	return Entry{Key: key, Memo: memo, PostedAt: at, Postings: []Posting{
		{Account: debit, Amount: amount, Currency: currency},
		{Account: credit, Amount: amount.Neg(), Currency: currency},
	}}
}

// Validate reports every reason e is not a valid, balanced entry.
func (e Entry) Validate() error {
	var errs []error
	if e.Key == "" {
		errs = append(errs, errors.New("ledger entry: key must be set"))
	}
	if len(e.Postings) < 2 {
		errs = append(errs, fmt.Errorf("ledger entry %s: needs at least two postings", e.Key))
	}
	sums := map[string]decimal.Decimal{}
	for i, p := range e.Postings {
		if !accountName.MatchString(p.Account) {
			errs = append(errs, fmt.Errorf("ledger entry %s posting %d: bad account %q", e.Key, i, p.Account))
		}
		if p.Amount.IsZero() {
			errs = append(errs, fmt.Errorf("ledger entry %s posting %d: zero amount", e.Key, i))
		}
		if len(p.Currency) != 3 {
			errs = append(errs, fmt.Errorf("ledger entry %s posting %d: bad currency %q", e.Key, i, p.Currency))
		}
		sums[p.Currency] = sums[p.Currency].Add(p.Amount)
	}
	for cur, s := range sums {
		if !s.IsZero() {
			errs = append(errs, fmt.Errorf("ledger entry %s: %s postings sum to %s, not zero", e.Key, cur, s))
		}
	}
	return errors.Join(errs...)
}

// Report is the outcome of checking a ledger.
type Report struct {
	Entries    int
	Postings   int
	Unbalanced []int64 // ids of entries whose postings do not sum to zero
	// Totals is the sum of all postings per currency: zero when the ledger
	// balances.
	Totals map[string]decimal.Decimal
}

// OK reports whether the ledger balances.
func (r Report) OK() bool {
	if len(r.Unbalanced) > 0 {
		return false
	}
	for _, t := range r.Totals {
		if !t.IsZero() {
			return false
		}
	}
	return true
}
