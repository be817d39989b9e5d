package fleet

import (
	"bytes"
	"math/rand/v2"
)

// Corruptions of a payload, each of which the server must refuse: the
// simulated meter's firmware bugs and line noise.
const (
	corruptTruncate = iota // cut short: malformed_json
	corruptVersion         // "v":2: bad_version
	corruptChannel         // an unknown OBIS code: bad_channel
	corruptGarbage         // bytes that are not JSON: malformed_json
	corruptKinds
)

// corrupt returns a corrupted copy of the compact payload p.
func corrupt(p []byte, r *rand.Rand) []byte {
	switch r.IntN(corruptKinds) {
	case corruptTruncate:
		return bytes.Clone(p[:max(1, len(p)-1-r.IntN(len(p)/2+1))])
	case corruptVersion:
		return bytes.Replace(p, []byte(`{"v":1,`), []byte(`{"v":2,`), 1)
	case corruptChannel:
		key := []byte(`"c":"`)
		i := bytes.Index(p, key)
		if i >= 0 {
			start := i + len(key)
			if end := bytes.IndexByte(p[start:], '"'); end >= 0 {
				out := append([]byte{}, p[:start]...)
				out = append(out, "9-9:99.99.99"...)
				return append(out, p[start+end:]...)
			}
		}
		fallthrough
	default:
		return append([]byte("\xff\xfe\x00garbage"), p...)
	}
}
