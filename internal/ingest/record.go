package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/meterflow/meterflow/internal/meter"
)

// A journal record is one accepted payload, decoded once at the edge and
// kept in a compact binary form:
//
//	version   byte (2; 1 has no model)
//	received  uvarint, milliseconds since the epoch (server clock)
//	meter     uvarint length + bytes
//	utility   byte (1 electricity, 2 water, 3 gas)
//	model     uvarint length + bytes (version 2): the meter's model, which
//	          selects its VEE rules
//	messages  uvarint count, then per message:
//	  seq       uvarint
//	  readings  uvarint count, then per reading:
//	    channel   uvarint length + bytes
//	    time      varint, milliseconds since the epoch
//	    value     varint, thousandths of the channel unit
//
// The format is versioned so that a journal written by one release can be
// replayed by the next.
const (
	recordVersion   = 2
	recordVersionV1 = 1
)

// Record is a decoded journal record.
type Record struct {
	Received time.Time
	Meter    string
	Utility  meter.Utility
	Model    string
	Messages []meter.Message
}

var utilityCodes = map[meter.Utility]byte{meter.Electricity: 1, meter.Water: 2, meter.Gas: 3}
var utilityByCode = [...]meter.Utility{1: meter.Electricity, 2: meter.Water, 3: meter.Gas}

// AppendRecord encodes one payload's messages onto dst.
func AppendRecord(dst []byte, received time.Time, meterID string, u meter.Utility, model string, msgs []meter.Message) []byte {
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, uint64(received.UnixMilli()))
	dst = binary.AppendUvarint(dst, uint64(len(meterID)))
	dst = append(dst, meterID...)
	dst = append(dst, utilityCodes[u])
	dst = binary.AppendUvarint(dst, uint64(len(model)))
	dst = append(dst, model...)
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		dst = binary.AppendUvarint(dst, m.Seq)
		dst = binary.AppendUvarint(dst, uint64(len(m.Readings)))
		for _, r := range m.Readings {
			dst = binary.AppendUvarint(dst, uint64(len(r.Channel)))
			dst = append(dst, r.Channel...)
			dst = binary.AppendVarint(dst, r.Time.UnixMilli())
			dst = binary.AppendVarint(dst, int64(r.Value))
		}
	}
	return dst
}

var errShort = errors.New("record truncated")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) || n > uint64(max) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// channelNames interns channel strings so decoding a record does not
// allocate one per reading.
var channelNames = func() map[string]meter.Channel {
	m := map[string]meter.Channel{}
	for _, u := range []meter.Utility{meter.Electricity, meter.Water, meter.Gas} {
		for _, c := range meter.Channels(u) {
			m[string(c.Channel)] = c.Channel
		}
	}
	return m
}()

// DecodeRecord decodes a journal record. Messages and readings are freshly
// allocated; nothing refers to data.
func DecodeRecord(data []byte) (Record, error) {
	var r Record
	if len(data) == 0 || (data[0] != recordVersion && data[0] != recordVersionV1) {
		return r, fmt.Errorf("journal record: unknown version")
	}
	d := decoder{b: data[1:]}
	r.Received = time.UnixMilli(int64(d.uvarint()))
	r.Meter = string(d.bytes(64))
	if d.err == nil {
		if len(d.b) == 0 {
			d.err = errShort
		} else {
			c := d.b[0]
			d.b = d.b[1:]
			if int(c) >= len(utilityByCode) || utilityByCode[c] == "" {
				return r, fmt.Errorf("journal record: bad utility %d", c)
			}
			r.Utility = utilityByCode[c]
		}
	}
	if data[0] >= 2 {
		r.Model = string(d.bytes(64))
	}
	n := d.uvarint()
	if n > 1<<16 {
		return r, fmt.Errorf("journal record: %d messages", n)
	}
	r.Messages = make([]meter.Message, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		m := meter.Message{Meter: r.Meter, Seq: d.uvarint()}
		k := d.uvarint()
		if k > 1<<10 {
			return r, fmt.Errorf("journal record: %d readings", k)
		}
		m.Readings = make([]meter.Reading, 0, k)
		for j := uint64(0); j < k && d.err == nil; j++ {
			name := d.bytes(32)
			ch, ok := channelNames[string(name)]
			if !ok {
				ch = meter.Channel(name)
			}
			t := d.varint()
			v := d.varint()
			m.Readings = append(m.Readings, meter.Reading{Channel: ch, Time: time.UnixMilli(t).UTC(), Value: meter.Value(v)})
		}
		r.Messages = append(r.Messages, m)
	}
	if d.err != nil {
		return r, fmt.Errorf("journal record: %w", d.err)
	}
	return r, nil
}
