package vee

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"

	"github.com/meterflow/meterflow/internal/meter"
)

// RuleSet holds the rules of every utility and meter model: the defaults
// of a utility (DefaultRules with the configuration's overrides), and for
// each configured meter model, its utility's rules with the model's own
// overrides. A meter without a model, or with a model the configuration
// does not name, gets its utility's rules.
type RuleSet struct {
	utility map[meter.Utility]*Rules
	model   map[string]*Rules // by model name
	models  map[string]meter.Utility
}

// DefaultRuleSet is the rule set with no configuration: DefaultRules for
// each utility.
func DefaultRuleSet() *RuleSet {
	rs := &RuleSet{utility: map[meter.Utility]*Rules{}, model: map[string]*Rules{}, models: map[string]meter.Utility{}}
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		r := DefaultRules(u)
		rs.utility[u] = &r
	}
	return rs
}

// For returns the rules of a meter of utility u and model (possibly "").
// The same pointer is returned every time, so it can be shared.
func (rs *RuleSet) For(u meter.Utility, model string) *Rules {
	if model != "" {
		if r, ok := rs.model[model]; ok && rs.models[model] == u {
			return r
		}
	}
	return rs.utility[u]
}

// Models lists the configured meter models, sorted.
func (rs *RuleSet) Models() []string { return slices.Sorted(maps.Keys(rs.model)) }

// Validate checks every rule set.
func (rs *RuleSet) Validate() error {
	var errs []error
	for _, u := range slices.Sorted(maps.Keys(rs.utility)) {
		if err := rs.utility[u].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
		}
	}
	for _, m := range rs.Models() {
		if err := rs.model[m].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("model %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// ruleFile is the YAML form of a rule set (docs/vee.md). Durations are Go
// durations ("2h"); quantities are decimals in the channel's unit ("100"
// kWh, "0.5" m³), exact to the thousandth.
type ruleFile struct {
	Utilities map[meter.Utility]overrides `yaml:"utilities"`
	Models    map[string]modelOverrides   `yaml:"models"`
}

type modelOverrides struct {
	Utility   meter.Utility `yaml:"utility"`
	overrides `yaml:",inline"`
}

type overrides struct {
	ReorderWindow *duration                      `yaml:"reorder_window"`
	LinearGapMax  *duration                      `yaml:"linear_gap_max"`
	MeasuredSpan  *duration                      `yaml:"measured_span"`
	SkewThreshold *duration                      `yaml:"skew_threshold"`
	MaxFuture     *duration                      `yaml:"max_future"`
	LateHorizon   *duration                      `yaml:"late_horizon"`
	TimeZone      *string                        `yaml:"time_zone"`
	Registers     map[meter.Channel]registerSpec `yaml:"registers"`
	Ranges        map[meter.Channel]rangeSpec    `yaml:"ranges"`
}

type registerSpec struct {
	Modulus     *quantity `yaml:"modulus"`
	MaxPerHour  *quantity `yaml:"max_per_hour"`
	SpikeFactor *int      `yaml:"spike_factor"`
	SpikeFloor  *quantity `yaml:"spike_floor"`
}

type rangeSpec struct {
	Min quantity `yaml:"min"`
	Max quantity `yaml:"max"`
}

type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 90m or 2h", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

type quantity meter.Value

func (q *quantity) UnmarshalYAML(n *yaml.Node) error {
	d, derr := decimal.NewFromString(n.Value)
	v, err := meter.ParseValue(n.Value)
	if err != nil || derr != nil || !d.Shift(3).IsInteger() {
		return fmt.Errorf("line %d: %q is not a quantity with at most 3 decimals", n.Line, n.Value)
	}
	*q = quantity(v)
	return nil
}

var modelName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseRuleSet reads a rule set from YAML: overrides per utility, then per
// meter model on top of its utility's. Unknown fields, channels of another
// kind and rules that fail Validate are refused with the field named.
func ParseRuleSet(data []byte) (*RuleSet, error) {
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, errEOF(err)) {
		return nil, fmt.Errorf("vee rules: %w", err)
	}
	rs := DefaultRuleSet()
	var errs []error
	for _, u := range slices.Sorted(maps.Keys(f.Utilities)) {
		base, ok := rs.utility[u]
		if !ok {
			errs = append(errs, fmt.Errorf("utilities.%s: not a utility (electricity, water, gas)", u))
			continue
		}
		r := base.clone()
		if err := f.Utilities[u].apply(&r, "utilities."+string(u)); err != nil {
			errs = append(errs, err)
		}
		rs.utility[u] = &r
	}
	for _, name := range slices.Sorted(maps.Keys(f.Models)) {
		mo := f.Models[name]
		where := "models." + name
		if !modelName.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: a model name is 1 to 64 of A-Z a-z 0-9 . _ -", where))
			continue
		}
		base, ok := rs.utility[mo.Utility]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.utility: want electricity, water or gas", where))
			continue
		}
		r := base.clone()
		if err := mo.apply(&r, where); err != nil {
			errs = append(errs, err)
		}
		rs.model[name], rs.models[name] = &r, mo.Utility
	}
	if len(errs) == 0 {
		errs = append(errs, rs.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("vee rules: %w", err)
	}
	return rs, nil
}

func errEOF(err error) error {
	if err != nil && err.Error() == "EOF" {
		return err
	}
	return errors.New("not EOF")
}

// clone copies r, with maps of its own.
func (r *Rules) clone() Rules {
	c := *r
	c.Registers = maps.Clone(r.Registers)
	c.Ranges = maps.Clone(r.Ranges)
	return c
}

func (o overrides) apply(r *Rules, where string) error {
	var errs []error
	set := func(dst *time.Duration, src *duration) {
		if src != nil {
			*dst = time.Duration(*src)
		}
	}
	set(&r.ReorderWindow, o.ReorderWindow)
	set(&r.LinearGapMax, o.LinearGapMax)
	set(&r.MeasuredSpan, o.MeasuredSpan)
	set(&r.SkewThreshold, o.SkewThreshold)
	set(&r.MaxFuture, o.MaxFuture)
	set(&r.LateHorizon, o.LateHorizon)
	if o.TimeZone != nil {
		loc, err := time.LoadLocation(*o.TimeZone)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.time_zone: %q is not a time zone", where, *o.TimeZone))
		} else {
			r.Location = loc
		}
	}
	for _, c := range slices.Sorted(maps.Keys(o.Registers)) {
		info, ok := meter.Lookup(c)
		if !ok || info.Kind != meter.Register {
			errs = append(errs, fmt.Errorf("%s.registers.%s: not a register channel", where, c))
			continue
		}
		rr, spec := r.Registers[c], o.Registers[c]
		if spec.Modulus != nil {
			rr.Modulus = meter.Value(*spec.Modulus)
		}
		if spec.MaxPerHour != nil {
			rr.MaxPerHour = meter.Value(*spec.MaxPerHour)
		}
		if spec.SpikeFactor != nil {
			rr.SpikeFactor = *spec.SpikeFactor
		}
		if spec.SpikeFloor != nil {
			rr.SpikeFloor = meter.Value(*spec.SpikeFloor)
		}
		r.Registers[c] = rr
	}
	for _, c := range slices.Sorted(maps.Keys(o.Ranges)) {
		info, ok := meter.Lookup(c)
		if !ok || info.Kind != meter.Instantaneous {
			errs = append(errs, fmt.Errorf("%s.ranges.%s: not an instantaneous channel", where, c))
			continue
		}
		r.Ranges[c] = Range{Min: meter.Value(o.Ranges[c].Min), Max: meter.Value(o.Ranges[c].Max)}
	}
	return errors.Join(errs...)
}
