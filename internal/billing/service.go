package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/tariff"
)

// Config configures the billing service. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// DueDays is how many days after the local issue day a bill is due.
	DueDays int
	// Workers is how many batches a bill run prices and writes at once.
	Workers int
	// BatchSize is how many accounts a worker loads, prices and writes
	// together: one usage query and one COPY per batch.
	BatchSize int
	// DefaultCalorificValue (MJ/m3) stands in for days missing from the
	// calorific_values table.
	DefaultCalorificValue decimal.Decimal
	// AdjustmentWindow is how far back (from the start of the period being
	// billed) earlier bills are checked for usage that changed after they
	// were issued: the default, 95 days, covers the last three bills. Each
	// bill checked costs a sum of its registers per run.
	AdjustmentWindow time.Duration
	// MaxCatchUp bounds the periods one run bills per account when runs
	// were missed.
	MaxCatchUp int
	// ForecastDays is the window of recent full days whose average daily
	// cost projects the rest of the cycle.
	ForecastDays int
}

// DefaultConfig holds every default in one place.
var DefaultConfig = Config{
	DueDays:               14,
	Workers:               2,
	BatchSize:             500,
	DefaultCalorificValue: decimal.RequireFromString("39.5"),
	AdjustmentWindow:      95 * 24 * time.Hour,
	MaxCatchUp:            12,
	ForecastDays:          7,
}

func (c Config) withDefaults() Config {
	d := DefaultConfig
	if c.DueDays == 0 {
		c.DueDays = d.DueDays
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.DefaultCalorificValue.IsZero() {
		c.DefaultCalorificValue = d.DefaultCalorificValue
	}
	if c.AdjustmentWindow == 0 {
		c.AdjustmentWindow = d.AdjustmentWindow
	}
	if c.MaxCatchUp == 0 {
		c.MaxCatchUp = d.MaxCatchUp
	}
	if c.ForecastDays == 0 {
		c.ForecastDays = d.ForecastDays
	}
	return c
}

// Validate reports every problem with c (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.DueDays < 0 || c.DueDays > 366 {
		errs = append(errs, errors.New("billing due days: want 0 to 366"))
	}
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, errors.New("billing workers: want 1 to 64"))
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		errs = append(errs, errors.New("billing batch size: want 1 to 100000"))
	}
	if !c.DefaultCalorificValue.IsPositive() || c.DefaultCalorificValue.GreaterThan(decimal.NewFromInt(100)) ||
		!c.DefaultCalorificValue.Equal(c.DefaultCalorificValue.Truncate(tariff.RateDecimals)) {
		errs = append(errs, errors.New("billing default calorific value: want more than 0 and at most 100 MJ/m3, at most 6 decimals"))
	}
	if c.AdjustmentWindow < 0 {
		errs = append(errs, errors.New("billing adjustment window: must not be negative"))
	}
	if c.MaxCatchUp < 1 {
		errs = append(errs, errors.New("billing max catch-up: want at least 1"))
	}
	if c.ForecastDays < 1 || c.ForecastDays > 31 {
		errs = append(errs, errors.New("billing forecast days: want 1 to 31"))
	}
	return errors.Join(errs...)
}

// Service is the billing engine. It is safe for concurrent use; the store
// keeps concurrent bill runs from issuing a bill twice.
type Service struct {
	store Store
	cfg   Config
	log   *slog.Logger
	// Now is the clock: cycles, issue and due dates and accruals follow it.
	Now func() time.Time

	locs sync.Map // time zone name → *time.Location
}

// New returns a service over store.
func New(store Store, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, cfg: cfg.withDefaults(), log: log, Now: time.Now}, nil
}

// LoadTariff parses a tariff file (tariff.Parse: YAML or JSON) and stores it
// as the next revision of its code, unless the latest revision is the same.
// A bad file is refused with an apperr.Invalid error that lists every
// problem as "field: reason".
func (s *Service) LoadTariff(ctx context.Context, data []byte) (StoredTariff, bool, error) {
	t, err := tariff.Parse(data)
	if err != nil {
		return StoredTariff{}, false, &apperr.Error{Code: apperr.Invalid, Message: "tariff refused", Err: err}
	}
	def, err := EncodeTariff(t)
	if err != nil {
		return StoredTariff{}, false, err
	}
	return s.store.SaveTariff(ctx, t, def)
}

// Bill returns an issued bill.
func (s *Service) Bill(ctx context.Context, id int64) (Bill, error) {
	return s.store.Bill(ctx, id)
}

// location resolves and caches a time zone.
func (s *Service) location(name string) (*time.Location, error) {
	if l, ok := s.locs.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	s.locs.Store(name, l)
	return l, nil
}

// tariffSet is every stored tariff revision, by code.
type tariffSet struct {
	byCode map[string][]StoredTariff // revisions in increasing order
}

func newTariffSet(ts []StoredTariff) tariffSet {
	set := tariffSet{byCode: map[string][]StoredTariff{}}
	for _, t := range ts {
		set.byCode[t.Code] = append(set.byCode[t.Code], t)
	}
	for _, revs := range set.byCode {
		for i := 1; i < len(revs); i++ {
			for j := i; j > 0 && revs[j].Revision < revs[j-1].Revision; j-- {
				revs[j], revs[j-1] = revs[j-1], revs[j]
			}
		}
	}
	return set
}

// get returns revision rev of code, or the latest when rev is 0.
func (ts tariffSet) get(code string, rev int) (StoredTariff, bool) {
	revs := ts.byCode[code]
	if len(revs) == 0 {
		return StoredTariff{}, false
	}
	if rev == 0 {
		return revs[len(revs)-1], true
	}
	for _, r := range revs {
		if r.Revision == rev {
			return r, true
		}
	}
	return StoredTariff{}, false
}

func (s *Service) loadTariffs(ctx context.Context) (tariffSet, error) {
	ts, err := s.store.Tariffs(ctx)
	if err != nil {
		return tariffSet{}, fmt.Errorf("load tariffs: %w", err)
	}
	return newTariffSet(ts), nil
}

// MarkOverdue marks unpaid bills past their due date (the due date is a day
// in the account's time zone: a bill due on the 15th is overdue from the
// 16th there) and records a bill.overdue event for each, once. Paying an
// overdue bill marks it paid. It returns how many bills it marked.
func (s *Service) MarkOverdue(ctx context.Context) (int, error) {
	return s.store.MarkOverdue(ctx, s.Now())
}
