package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const (
	segmentExt = ".seg"
	filePerm   = 0o644
	dirPerm    = 0o755
)

// segment is one retained segment file. start is the position of its first
// record in the journal's running byte count of records (see
// Journal.durable), which lets the budget work across segments.
type segment struct {
	base  uint64 // offset of its first record
	start int64
	size  int64 // bytes of records
	alloc int64 // size of the file, preallocated zeros included
}

func segmentName(base uint64) string {
	return fmt.Sprintf("%020d%s", base, segmentExt)
}

// parseSegmentName returns the base offset encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || base == 0 {
		return 0, false
	}
	return base, true
}

// listSegments returns the base offsets of the segment files in dir,
// ascending. Other files are ignored.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: list segments: %w", err)
	}
	var bases []uint64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if base, ok := parseSegmentName(e.Name()); ok {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases, nil
}

func segmentPath(dir string, base uint64) string {
	return filepath.Join(dir, segmentName(base))
}
