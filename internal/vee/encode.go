package vee

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/meterflow/meterflow/internal/meter"
)

// The encoding of a State, version 2 (version 1 is the same without the
// arcs). Integers are varints (signed ones
// zig-zag), strings a length and bytes, so a typical state is a few
// hundred bytes:
//
//	"vee" 0x01
//	meter, utility             string
//	newest, maxSent            varint (noTime is math.MinInt64)
//	nseqs                      uvarint, then per range: lo, hi-lo
//	clock                      corr, cand varint; candN byte; hasPrev byte;
//	                           prevSeq uvarint; prevSent, prevRecv varint
//	nregs                      uvarint, then per register:
//	  channel                  string
//	  first                    varint (time of the first read ever)
//	  baseline varint, baseN byte
//	  profile                  byte 0 (none) or 1, then learned bits as
//	                           3 uvarints and the learned buckets' values
//	  nreads                   uvarint, then per read: t (the first as a
//	                           varint, then the uvarint step from the read
//	                           before), raw, delta, acc, head varint;
//	                           seg, accF uvarint; bits byte
//	  narcs                    uvarint (version 2), then per arc: from
//	                           varint, to-from uvarint, fromRaw, sum
//	                           varint, flags uvarint
//
// A new version gets a new version byte; UnmarshalBinary keeps reading
// every version it ever wrote.
const (
	encMagic   = "vee"
	encVersion = 2
	maxRegs    = 64
	maxString  = 256
)

// The range of times a decoded state may hold: 2000-01-01 (the protocol
// refuses older readings) to 2200-01-01, as Unix milliseconds.
const (
	minTime = 946_684_800_000
	maxTime = 7_258_118_400_000
)

var (
	_ interface {
		MarshalBinary() ([]byte, error)
		AppendBinary([]byte) ([]byte, error)
		UnmarshalBinary([]byte) error
	} = (*State)(nil)
)

// MarshalBinary encodes s for persistence; UnmarshalBinary restores it.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, 256))
}

// AppendBinary appends the encoding of s to b.
func (s *State) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, encMagic...)
	b = append(b, encVersion)
	b = appendString(b, s.meter)
	b = appendString(b, string(s.utility))
	b = binary.AppendVarint(b, s.newest)
	b = binary.AppendVarint(b, s.maxSent)
	b = binary.AppendUvarint(b, uint64(len(s.seqs)))
	for _, q := range s.seqs {
		b = binary.AppendUvarint(b, q.lo)
		b = binary.AppendUvarint(b, q.hi-q.lo)
	}
	c := &s.clock
	b = binary.AppendVarint(b, c.corr)
	b = binary.AppendVarint(b, c.cand)
	b = append(b, c.candN, boolByte(c.hasPrev))
	b = binary.AppendUvarint(b, c.prevSeq)
	b = binary.AppendVarint(b, c.prevSent)
	b = binary.AppendVarint(b, c.prevRecv)
	b = binary.AppendUvarint(b, uint64(len(s.regs)))
	for i := range s.regs {
		g := &s.regs[i]
		b = appendString(b, string(g.ch))
		b = binary.AppendVarint(b, g.first)
		b = binary.AppendVarint(b, g.baseline)
		b = append(b, g.baseN)
		if g.prof == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			for _, w := range g.prof.learned {
				b = binary.AppendUvarint(b, w)
			}
			for h := range hoursPerWeek {
				if g.prof.has(h) {
					b = binary.AppendUvarint(b, uint64(g.prof.w[h]))
				}
			}
		}
		b = binary.AppendUvarint(b, uint64(len(g.reads)))
		for j, rd := range g.reads {
			if j == 0 {
				b = binary.AppendVarint(b, rd.t)
			} else {
				b = binary.AppendUvarint(b, uint64(rd.t-g.reads[j-1].t))
			}
			b = binary.AppendVarint(b, int64(rd.raw))
			b = binary.AppendVarint(b, int64(rd.delta))
			b = binary.AppendVarint(b, int64(rd.acc))
			b = binary.AppendVarint(b, int64(rd.head))
			b = binary.AppendUvarint(b, uint64(rd.seg))
			b = binary.AppendUvarint(b, uint64(rd.accF))
			b = append(b, rd.bits)
		}
		b = binary.AppendUvarint(b, uint64(len(g.arcs)))
		for _, a := range g.arcs {
			b = binary.AppendVarint(b, a.from)
			b = binary.AppendUvarint(b, uint64(a.to-a.from))
			b = binary.AppendVarint(b, int64(a.fromRaw))
			b = binary.AppendVarint(b, int64(a.sum))
			b = binary.AppendUvarint(b, uint64(a.flags))
		}
	}
	return b, nil
}

// UnmarshalBinary replaces s with the state encoded in b. It checks the
// encoding's structure (sorted reads, known channels, sane counts) so that
// a damaged row fails here rather than later in Apply.
func (s *State) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if len(b) < len(encMagic)+1 || string(b[:len(encMagic)]) != encMagic {
		return errors.New("decode vee state: not a vee state")
	}
	version := b[len(encMagic)]
	if version != 1 && version != encVersion {
		return fmt.Errorf("decode vee state: unknown version %d", version)
	}
	d.b = b[len(encMagic)+1:]
	var t State
	t.meter = d.string()
	t.utility = meter.Utility(d.string())
	if d.err == nil && !t.utility.Valid() {
		d.fail("unknown utility %q", t.utility)
	}
	t.newest = d.time(true)
	t.maxSent = d.time(true)
	if n := d.count(maxSeqRanges); n > 0 {
		t.seqs = make([]seqRange, 0, max(n, 4))
		for range n {
			lo := d.uvarint()
			q := seqRange{lo, lo + d.uvarint()}
			if q.hi < q.lo || (len(t.seqs) > 0 && q.lo <= t.seqs[len(t.seqs)-1].hi+1) {
				d.fail("sequence ranges out of order")
			}
			t.seqs = append(t.seqs, q)
		}
	}
	c := &t.clock
	c.corr = d.varint()
	c.cand = d.varint()
	c.candN = d.byte()
	c.hasPrev = d.bool()
	c.prevSeq = d.uvarint()
	c.prevSent = d.varint()
	c.prevRecv = d.varint()
	if !c.hasPrev && (c.prevSeq != 0 || c.prevSent != 0 || c.prevRecv != 0) {
		d.fail("clock without a previous message has one")
	}
	if n := d.count(maxRegs); n > 0 {
		t.regs = make([]register, n)
		for i := range t.regs {
			d.register(&t.regs[i], version)
			for j := range i {
				if t.regs[j].ch == t.regs[i].ch {
					d.fail("channel %s twice", t.regs[i].ch)
				}
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the end", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("decode vee state: %w", d.err)
	}
	*s = t
	return nil
}

func (d *decoder) register(g *register, version byte) {
	g.ch = meter.Channel(d.string())
	if i, ok := meter.Lookup(g.ch); d.err == nil && (!ok || i.Kind != meter.Register) {
		d.fail("%q is not a register channel", g.ch)
	}
	g.first = d.time(true)
	g.baseline = d.varint()
	g.baseN = d.byte()
	switch d.byte() {
	case 0:
	case 1:
		p := new(profile)
		for i := range p.learned {
			p.learned[i] = d.uvarint()
		}
		if p.learned[2]>>(hoursPerWeek-128) != 0 {
			d.fail("profile hour out of range")
		}
		for h := range hoursPerWeek {
			if p.has(h) {
				w := d.uvarint()
				if w > profileScale {
					d.fail("profile weight %d out of range", w)
				}
				p.w[h] = uint16(w)
				p.n++
			}
		}
		g.prof = p
	default:
		d.fail("bad profile marker")
	}
	n := d.count(maxReads)
	g.reads = make([]read, n, max(n, readsCap))
	for j := range g.reads {
		rd := &g.reads[j]
		if j == 0 {
			rd.t = d.time(false)
		} else {
			step := d.uvarint()
			prev := g.reads[j-1].t
			if step == 0 || step >= uint64(maxTime-prev) {
				d.fail("read times out of order")
				return
			}
			rd.t = prev + int64(step)
		}
		rd.raw = meter.Value(d.varint())
		rd.delta = meter.Value(d.varint())
		rd.acc = meter.Value(d.varint())
		rd.head = meter.Value(d.varint())
		rd.seg = Flag(d.uvarint())
		rd.accF = Flag(d.uvarint())
		rd.bits = d.byte()
		if rd.seg&^segFlags != 0 || rd.accF&^segFlags != 0 || rd.bits&^bitsMask != 0 {
			d.fail("unknown flags")
		}
		if rd.t < g.first || g.first == noTime {
			d.fail("read before the channel's first read")
		}
	}
	if version < 2 {
		return
	}
	if n := d.count(maxArcs); n > 0 {
		g.arcs = make([]gapArc, n)
		for j := range g.arcs {
			a := &g.arcs[j]
			a.from = d.time(false)
			span := d.uvarint()
			if span == 0 || span >= uint64(maxTime-a.from) {
				d.fail("arc out of range")
				return
			}
			a.to = a.from + int64(span)
			a.fromRaw = meter.Value(d.varint())
			a.sum = meter.Value(d.varint())
			a.flags = Flag(d.uvarint())
			if a.sum < 0 || a.fromRaw < 0 || a.flags&^segFlags != 0 || (j > 0 && a.from < g.arcs[j-1].to) {
				d.fail("bad arc")
				return
			}
		}
	}
}

// decoder reads the encoding, remembering the first error; after an error
// every read returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
	d.b = nil
}

// The varint readers accept only the shortest encoding, so that a state
// has exactly one encoding.
func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail("truncated or bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail("truncated or bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

// time reads a time that must be noTime or within the years Meterflow can
// meet, so that a damaged state cannot send Apply across centuries of
// intervals.
func (d *decoder) time(allowNone bool) int64 {
	t := d.varint()
	if (t != noTime || !allowNone) && (t < minTime || t >= maxTime) {
		d.fail("time %d out of range", t)
	}
	return t
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) count(limit int) int {
	n := d.uvarint()
	if n > uint64(limit) {
		d.fail("count %d above %d", n, limit)
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count(maxString)
	if n > len(d.b) {
		d.fail("truncated")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Size returns about how many bytes of memory s holds, for capacity
// planning and per-worker memory metrics. The encoding is smaller: see
// MarshalBinary.
func (s *State) Size() int {
	n := int(unsafe.Sizeof(*s)) + len(s.meter) + cap(s.seqs)*int(unsafe.Sizeof(seqRange{}))
	n += cap(s.regs) * int(unsafe.Sizeof(register{}))
	for i := range s.regs {
		g := &s.regs[i]
		n += cap(g.reads) * int(unsafe.Sizeof(read{}))
		if g.prof != nil {
			n += int(unsafe.Sizeof(profile{}))
		}
	}
	return n
}
