package tariff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"

	"github.com/meterflow/meterflow/internal/meter"
)

// MaxFileSize bounds the tariff files Parse accepts. A real tariff is a few
// kilobytes.
const MaxFileSize = 1 << 20

// Parse decodes a tariff file (YAML, or JSON, which is YAML too) in the
// format described in docs/billing.md and validates it.
//
// Decoding is strict: unknown and duplicate fields, wrong types, numbers
// that are not plain decimals, and YAML aliases are errors. Problems are
// reported in two stages, each joining every problem it finds as a
// *FieldError naming the field path: first the shape of the file, then
// (once the shape is right) the rules of Validate.
//
// Numbers are read from their text, never through float64, so "0.1" is
// exactly one tenth.
func Parse(data []byte) (t Tariff, err error) {
	if len(data) > MaxFileSize {
		return Tariff{}, &FieldError{Reason: fmt.Sprintf("file is %d bytes, more than %d", len(data), MaxFileSize)}
	}
	defer func() {
		// The YAML parser is not ours; a panic on hostile input must not
		// take the process down.
		if r := recover(); r != nil {
			t, err = Tariff{}, &FieldError{Reason: fmt.Sprintf("cannot parse: %v", r)}
		}
	}()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Tariff{}, &FieldError{Reason: "empty file"}
		}
		return Tariff{}, &FieldError{Reason: err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Tariff{}, &FieldError{Reason: "more than one YAML document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := &decoder{}
	t = d.tariff(root)
	if len(d.p) > 0 {
		return Tariff{}, d.p.err()
	}
	if err := t.Validate(); err != nil {
		return Tariff{}, err
	}
	return t, nil
}

// decoder walks a YAML node tree by hand so that every problem can name its
// field path and all of them are reported together.
type decoder struct {
	p problems
}

// field decodes the value of one mapping key.
type field func(n *yaml.Node, path string)

func (d *decoder) tariff(n *yaml.Node) Tariff {
	var t Tariff
	d.mapping(n, "", map[string]field{
		"code":     func(n *yaml.Node, p string) { t.Code = d.str(n, p) },
		"name":     func(n *yaml.Node, p string) { t.Name = d.str(n, p) },
		"utility":  func(n *yaml.Node, p string) { t.Utility = meter.Utility(d.str(n, p)) },
		"currency": func(n *yaml.Node, p string) { t.Currency = d.str(n, p) },
		"unit":     func(n *yaml.Node, p string) { t.Unit = d.str(n, p) },
		"versions": func(n *yaml.Node, p string) {
			d.seq(n, p, func(n *yaml.Node, p string) { t.Versions = append(t.Versions, d.version(n, p)) })
		},
	}, "code", "name", "utility", "currency", "unit", "versions")
	return t
}

func (d *decoder) version(n *yaml.Node, path string) Version {
	var v Version
	d.mapping(n, path, map[string]field{
		"effective_from":          func(n *yaml.Node, p string) { v.EffectiveFrom = d.date(n, p) },
		"standing_charge_per_day": func(n *yaml.Node, p string) { v.StandingChargePerDay = d.decimal(n, p) },
		"flat_rate": func(n *yaml.Node, p string) {
			r := d.decimal(n, p)
			v.FlatRate = &r
		},
		"tiers": func(n *yaml.Node, p string) {
			t := d.tiers(n, p)
			v.Tiers = &t
		},
		"tou": func(n *yaml.Node, p string) {
			t := d.tou(n, p)
			v.TOU = &t
		},
		"demand": func(n *yaml.Node, p string) {
			x := Demand{WindowMinutes: 15}
			d.mapping(n, p, map[string]field{
				"rate_per_kw":    func(n *yaml.Node, p string) { x.RatePerKW = d.decimal(n, p) },
				"window_minutes": func(n *yaml.Node, p string) { x.WindowMinutes = d.int(n, p) },
			}, "rate_per_kw")
			v.Demand = &x
		},
		"levies": func(n *yaml.Node, p string) {
			d.seq(n, p, func(n *yaml.Node, p string) { v.Levies = append(v.Levies, d.levy(n, p)) })
		},
		"taxes": func(n *yaml.Node, p string) {
			d.seq(n, p, func(n *yaml.Node, p string) {
				var x Tax
				d.mapping(n, p, map[string]field{
					"name":    func(n *yaml.Node, p string) { x.Name = d.str(n, p) },
					"percent": func(n *yaml.Node, p string) { x.Percent = d.decimal(n, p) },
				}, "name", "percent")
				v.Taxes = append(v.Taxes, x)
			})
		},
		"minimum_charge": func(n *yaml.Node, p string) { v.MinimumCharge = d.decimal(n, p) },
	}, "effective_from", "standing_charge_per_day")
	return v
}

func (d *decoder) tiers(n *yaml.Node, path string) Tiers {
	t := Tiers{Basis: PerPeriod}
	d.mapping(n, path, map[string]field{
		"per": func(n *yaml.Node, p string) { t.Basis = TierBasis(d.str(n, p)) },
		"blocks": func(n *yaml.Node, p string) {
			d.seq(n, p, func(n *yaml.Node, p string) {
				var b Block
				d.mapping(n, p, map[string]field{
					"up_to": func(n *yaml.Node, p string) {
						u := d.decimal(n, p)
						b.UpTo = &u
					},
					"rate": func(n *yaml.Node, p string) { b.Rate = d.decimal(n, p) },
				}, "rate")
				t.Blocks = append(t.Blocks, b)
			})
		},
	}, "blocks")
	return t
}

func (d *decoder) tou(n *yaml.Node, path string) TOU {
	var t TOU
	d.mapping(n, path, map[string]field{
		"bands": func(n *yaml.Node, p string) { t.Bands = d.bands(n, p) },
		"seasons": func(n *yaml.Node, p string) {
			d.seq(n, p, func(n *yaml.Node, p string) {
				var s Season
				d.mapping(n, p, map[string]field{
					"name":       func(n *yaml.Node, p string) { s.Name = d.str(n, p) },
					"from_month": func(n *yaml.Node, p string) { s.FromMonth = time.Month(d.int(n, p)) },
					"to_month":   func(n *yaml.Node, p string) { s.ToMonth = time.Month(d.int(n, p)) },
					"bands":      func(n *yaml.Node, p string) { s.Bands = d.bands(n, p) },
				}, "name", "from_month", "to_month", "bands")
				t.Seasons = append(t.Seasons, s)
			})
		},
	})
	return t
}

func (d *decoder) bands(n *yaml.Node, path string) []Band {
	var bs []Band
	d.seq(n, path, func(n *yaml.Node, p string) {
		b := Band{Days: AllDays}
		d.mapping(n, p, map[string]field{
			"name": func(n *yaml.Node, p string) { b.Name = d.str(n, p) },
			"from": func(n *yaml.Node, p string) { b.From = d.int(n, p) },
			"to":   func(n *yaml.Node, p string) { b.To = d.int(n, p) },
			"days": func(n *yaml.Node, p string) { b.Days = DayType(d.str(n, p)) },
			"rate": func(n *yaml.Node, p string) { b.Rate = d.decimal(n, p) },
		}, "name", "from", "to", "rate")
		bs = append(bs, b)
	})
	return bs
}

func (d *decoder) levy(n *yaml.Node, path string) Levy {
	var l Levy
	var bases int
	d.mapping(n, path, map[string]field{
		"name": func(n *yaml.Node, p string) { l.Name = d.str(n, p) },
		"per_unit": func(n *yaml.Node, p string) {
			l.Basis, l.Rate = PerUnit, d.decimal(n, p)
			bases++
		},
		"per_bill": func(n *yaml.Node, p string) {
			l.Basis, l.Rate = PerBill, d.decimal(n, p)
			bases++
		},
	}, "name")
	switch {
	case n.Kind != yaml.MappingNode:
	case bases == 0:
		d.p.add(path, "per_unit or per_bill is required")
	case bases > 1:
		d.p.add(path, "set per_unit or per_bill, not both")
	}
	return l
}

// mapping decodes a mapping whose keys must all be in fields, reporting
// unknown, duplicate and missing required keys.
func (d *decoder) mapping(n *yaml.Node, path string, fields map[string]field, required ...string) {
	if !d.plain(n, path) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.p.add(path, "want a mapping, found %s", describe(n))
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.p.add(path, "a key is %s, not a field name", describe(k))
			continue
		}
		kp := join(path, k.Value)
		if seen[k.Value] {
			d.p.add(kp, "duplicate field")
			continue
		}
		seen[k.Value] = true
		f, ok := fields[k.Value]
		if !ok {
			d.p.add(kp, "unknown field")
			continue
		}
		f(v, kp)
	}
	for _, r := range required {
		if !seen[r] {
			d.p.add(join(path, r), "required")
		}
	}
}

func (d *decoder) seq(n *yaml.Node, path string, each func(n *yaml.Node, path string)) {
	if !d.plain(n, path) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.p.add(path, "want a list, found %s", describe(n))
		return
	}
	for i, c := range n.Content {
		each(c, fmt.Sprintf("%s[%d]", path, i))
	}
}

// scalar returns the text of a scalar node.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if !d.plain(n, path) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		d.p.add(path, "want a value, found %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, path string) string {
	s, _ := d.scalar(n, path)
	return s
}

// decimalSyntax is what a number in a tariff file may look like: a plain
// decimal with an optional exponent, within sizes that keep arithmetic on it
// cheap. YAML's .inf, .nan, hexadecimal and octal forms are refused.
var decimalSyntax = regexp.MustCompile(`^[+-]?([0-9]{1,18}(\.[0-9]{0,18})?|\.[0-9]{1,18})([eE][+-]?[0-9]{1,2})?$`)

func (d *decoder) decimal(n *yaml.Node, path string) decimal.Decimal {
	s, ok := d.scalar(n, path)
	if !ok {
		return decimal.Decimal{}
	}
	switch n.ShortTag() {
	case "!!int", "!!float", "!!str":
	default:
		d.p.add(path, "want a number, found %s", describe(n))
		return decimal.Decimal{}
	}
	if !decimalSyntax.MatchString(s) {
		d.p.add(path, "%q is not a decimal number", s)
		return decimal.Decimal{}
	}
	x, err := decimal.NewFromString(s)
	if err != nil {
		d.p.add(path, "%q is not a decimal number", s)
		return decimal.Decimal{}
	}
	return x
}

var intSyntax = regexp.MustCompile(`^[+-]?[0-9]{1,6}$`)

func (d *decoder) int(n *yaml.Node, path string) int {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0
	}
	if !intSyntax.MatchString(s) {
		d.p.add(path, "%q is not a whole number", s)
		return 0
	}
	i, _ := strconv.Atoi(s)
	return i
}

func (d *decoder) date(n *yaml.Node, path string) Date {
	s, ok := d.scalar(n, path)
	if !ok {
		return Date{}
	}
	x, err := ParseDate(s)
	if err != nil {
		d.p.add(path, "%v", err)
	}
	return x
}

// plain refuses aliases: expanding them is how small YAML files become huge
// trees, and a tariff file has no need of them.
func (d *decoder) plain(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		d.p.add(path, "YAML aliases are not supported")
		return false
	}
	return true
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
