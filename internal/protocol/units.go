package protocol

import "github.com/meterflow/meterflow/internal/meter"

// unitExp returns the power of ten that converts a value in unit u to the
// channel's canonical unit, following the Units table of docs/protocol.md:
// the canonical unit, or its one accepted submultiple (Wh, W, l, l/h),
// which is a thousandth of it. Units are case-sensitive, as in SenML.
func unitExp(info meter.ChannelInfo, u string) (int, bool) {
	if u == info.Unit {
		return 0, true
	}
	if alt := altUnit(info.Unit); alt != "" && u == alt {
		return -3, true
	}
	return 0, false
}

// altUnit is the thousandth of a canonical unit that meters may also send,
// or "" when there is none (V, A).
func altUnit(canonical string) string {
	switch canonical {
	case "kWh":
		return "Wh"
	case "kW":
		return "W"
	case "m3":
		return "l"
	case "m3/h":
		return "l/h"
	}
	return ""
}

// acceptedUnits lists the units a channel accepts, for error details.
func acceptedUnits(info meter.ChannelInfo) string {
	if alt := altUnit(info.Unit); alt != "" {
		return info.Unit + " or " + alt
	}
	return info.Unit
}
