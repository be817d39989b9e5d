package meter

import (
	"fmt"
	"strings"
)

// Channel is an OBIS code in its reduced form A-B:C.D.E, for example
// "1-0:1.8.0" for imported active energy.
type Channel string

// Kind tells whether a channel is a cumulative register (consumption is a
// difference of two reads) or an instantaneous value (power, voltage).
type Kind uint8

const (
	Register Kind = iota + 1
	Instantaneous
)

// ChannelInfo describes a channel Meterflow understands.
type ChannelInfo struct {
	Channel Channel
	Utility Utility
	Kind    Kind
	// Unit is the canonical unit values are stored in (thousandths of it).
	Unit string
	// Name is a short human name for dashboards and exports.
	Name string
}

// Known channels. The protocol accepts only these; docs/protocol.md lists
// them with their units.
var channels = map[Channel]ChannelInfo{
	"1-0:1.8.0":  {"1-0:1.8.0", Electricity, Register, "kWh", "active energy imported"},
	"1-0:1.8.1":  {"1-0:1.8.1", Electricity, Register, "kWh", "active energy imported, T1"},
	"1-0:1.8.2":  {"1-0:1.8.2", Electricity, Register, "kWh", "active energy imported, T2"},
	"1-0:2.8.0":  {"1-0:2.8.0", Electricity, Register, "kWh", "active energy exported"},
	"1-0:1.7.0":  {"1-0:1.7.0", Electricity, Instantaneous, "kW", "active power imported"},
	"1-0:2.7.0":  {"1-0:2.7.0", Electricity, Instantaneous, "kW", "active power exported"},
	"1-0:32.7.0": {"1-0:32.7.0", Electricity, Instantaneous, "V", "voltage L1"},
	"1-0:31.7.0": {"1-0:31.7.0", Electricity, Instantaneous, "A", "current L1"},
	"8-0:1.0.0":  {"8-0:1.0.0", Water, Register, "m3", "water volume"},
	"8-0:2.0.0":  {"8-0:2.0.0", Water, Instantaneous, "m3/h", "water flow"},
	"7-0:3.0.0":  {"7-0:3.0.0", Gas, Register, "m3", "gas volume"},
	"7-0:43.0.0": {"7-0:43.0.0", Gas, Instantaneous, "m3/h", "gas flow"},
}

// Lookup returns what Meterflow knows of c.
func Lookup(c Channel) (ChannelInfo, bool) {
	i, ok := channels[c]
	return i, ok
}

// Channels lists every known channel of a utility.
func Channels(u Utility) []ChannelInfo {
	var out []ChannelInfo
	for _, i := range channels {
		if i.Utility == u {
			out = append(out, i)
		}
	}
	return out
}

// PrimaryRegister is the register a utility is billed on.
func PrimaryRegister(u Utility) Channel {
	switch u {
	case Electricity:
		return "1-0:1.8.0"
	case Water:
		return "8-0:1.0.0"
	case Gas:
		return "7-0:3.0.0"
	}
	return ""
}

// ParseChannel validates an OBIS code string against the known channels.
func ParseChannel(s string) (ChannelInfo, error) {
	i, ok := channels[Channel(strings.TrimSpace(s))]
	if !ok {
		return ChannelInfo{}, fmt.Errorf("unknown channel %q", s)
	}
	return i, nil
}
