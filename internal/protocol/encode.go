package protocol

import (
	"strconv"

	"github.com/meterflow/meterflow/internal/meter"
)

// AppendCompact appends m as a compact payload to dst. All readings of m
// must share one time (the first reading's is written); values are written
// in canonical units, and the time in seconds with a millisecond fraction
// when it has one. The meter ID is not part of the payload: it is the
// topic's and the connection's.
//
// Decoding the result gives m back, with its times in UTC, whenever m is
// something Decode could have produced: 1 to MaxReadings readings of
// distinct known channels at a time within the accepted range.
func AppendCompact(dst []byte, m meter.Message) []byte {
	dst = append(dst, `{"v":1,`...)
	dst = appendEntry(dst, m)
	return append(dst, '}')
}

// AppendCompactBatch appends ms as one compact backlog payload (the b
// form) to dst, one entry per message, in order; each message is written
// as by AppendCompact. A payload holds at most MaxEntries messages.
func AppendCompactBatch(dst []byte, ms []meter.Message) []byte {
	dst = append(dst, `{"v":1,"b":[`...)
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendEntry(dst, m)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendEntry appends the seq, t and r members of m.
func appendEntry(dst []byte, m meter.Message) []byte {
	dst = append(dst, `"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `,"t":`...)
	var ms int64
	if len(m.Readings) > 0 {
		ms = m.Readings[0].Time.UnixMilli()
	}
	dst = appendSeconds(dst, ms)
	dst = append(dst, `,"r":[`...)
	for i, r := range m.Readings {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"c":`...)
		dst = appendString(dst, string(r.Channel))
		dst = append(dst, `,"v":`...)
		dst = append(dst, r.Value.String()...)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendSeconds appends ms milliseconds as seconds, with three decimals
// only when ms is not a whole second.
func appendSeconds(dst []byte, ms int64) []byte {
	u := uint64(ms)
	if ms < 0 {
		dst = append(dst, '-')
		u = -u
	}
	dst = strconv.AppendUint(dst, u/1000, 10)
	if frac := u % 1000; frac != 0 {
		dst = append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	}
	return dst
}

// appendString appends s as a JSON string. Channels are plain ASCII, so
// escaping is only a safety net.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
