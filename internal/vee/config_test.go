package vee

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meterflow/meterflow/internal/meter"
)

func TestParseRuleSet(t *testing.T) {
	rs, err := ParseRuleSet([]byte(`
utilities:
  water:
    reorder_window: 6h
models:
  EM-5D:
    utility: electricity
    registers:
      1-0:1.8.0: {modulus: "100000", max_per_hour: "24", spike_factor: 20}
    ranges:
      1-0:32.7.0: {min: 180, max: 270}
  WM-BIG:
    utility: water
    linear_gap_max: 4h
    time_zone: Europe/London
`))
	require.NoError(t, err)
	assert.Equal(t, []string{"EM-5D", "WM-BIG"}, rs.Models())

	e := rs.For(meter.Electricity, "EM-5D")
	assert.Equal(t, meter.Value(100_000*meter.Scale), e.Registers["1-0:1.8.0"].Modulus)
	assert.Equal(t, meter.Value(24*meter.Scale), e.Registers["1-0:1.8.0"].MaxPerHour)
	assert.Equal(t, 20, e.Registers["1-0:1.8.0"].SpikeFactor)
	assert.Equal(t, DefaultRules(meter.Electricity).Registers["1-0:1.8.0"].SpikeFloor, e.Registers["1-0:1.8.0"].SpikeFloor, "unset fields keep the default")
	assert.Equal(t, Range{180 * meter.Scale, 270 * meter.Scale}, e.Ranges["1-0:32.7.0"])
	assert.Equal(t, DefaultRules(meter.Electricity).Registers["1-0:2.8.0"], e.Registers["1-0:2.8.0"])

	def := rs.For(meter.Electricity, "")
	assert.Equal(t, DefaultRules(meter.Electricity).Registers["1-0:1.8.0"], def.Registers["1-0:1.8.0"], "a model's overrides stay with the model")
	assert.Same(t, def, rs.For(meter.Electricity, "unknown-model"))
	assert.Same(t, def, rs.For(meter.Electricity, "WM-BIG"), "a model of another utility does not apply")

	w := rs.For(meter.Water, "WM-BIG")
	assert.Equal(t, 6*time.Hour, w.ReorderWindow, "a model starts from its utility's overrides")
	assert.Equal(t, 4*time.Hour, w.LinearGapMax)
	assert.Equal(t, "Europe/London", w.Location.String())
	assert.Equal(t, 6*time.Hour, rs.For(meter.Water, "").ReorderWindow)
	assert.Equal(t, 2*time.Hour, rs.For(meter.Gas, "").ReorderWindow)

	empty, err := ParseRuleSet(nil)
	require.NoError(t, err)
	assert.Empty(t, empty.Models())
}

func TestParseRuleSetNamesTheFault(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"utilities:\n  steam: {}\n", "utilities.steam: not a utility"},
		{"models:\n  X:\n    utility: heat\n", "models.X.utility"},
		{"models:\n  X:\n    utility: gas\n    registers:\n      7-0:43.0.0: {modulus: 10}\n", "models.X.registers.7-0:43.0.0: not a register channel"},
		{"models:\n  X:\n    utility: gas\n    ranges:\n      7-0:3.0.0: {min: 0, max: 1}\n", "models.X.ranges.7-0:3.0.0: not an instantaneous channel"},
		{"utilities:\n  gas:\n    reorder_window: soon\n", "not a duration"},
		{"utilities:\n  gas:\n    registers:\n      7-0:3.0.0: {modulus: 1.0001}\n", "at most 3 decimals"},
		{"utilities:\n  gas:\n    colour: red\n", "colour"},
		{"models:\n  X:\n    utility: gas\n    linear_gap_max: 1m\n", "linear gap max"},
		{"models:\n  \"bad name\":\n    utility: gas\n", "a model name"},
		{"models:\n  X:\n    utility: gas\n    time_zone: Mars/Olympus\n", "time_zone"},
	} {
		_, err := ParseRuleSet([]byte(c.yaml))
		require.Error(t, err, c.yaml)
		assert.Contains(t, err.Error(), c.want, c.yaml)
	}
}
