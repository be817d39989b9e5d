package postgres

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/meterflow/meterflow/internal/tariff"
)

// textCopy builds the rows of a COPY ... FROM STDIN in PostgreSQL's text
// format. For wide rows of numerics, dates and text it is several times
// cheaper than pgx's binary CopyFrom, which plans the encoding of every
// value of every row.
type textCopy struct {
	buf     bytes.Buffer
	cols    int
	rows    int
	scratch [40]byte
}

// row starts a row.
func (c *textCopy) row() {
	if c.rows > 0 || c.cols > 0 {
		c.buf.WriteByte('\n')
	}
	c.rows++
	c.cols = 0
}

func (c *textCopy) sep() {
	if c.cols > 0 {
		c.buf.WriteByte('\t')
	}
	c.cols++
}

func (c *textCopy) null() {
	c.sep()
	c.buf.WriteString(`\N`)
}

// str writes text, escaping what the text format treats specially.
func (c *textCopy) str(s string) {
	c.sep()
	c.escaped(s)
}

func (c *textCopy) escaped(s string) {
	if strings.IndexAny(s, "\\\t\n\r") < 0 {
		c.buf.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '\\':
			c.buf.WriteString(`\\`)
		case '\t':
			c.buf.WriteString(`\t`)
		case '\n':
			c.buf.WriteString(`\n`)
		case '\r':
			c.buf.WriteString(`\r`)
		default:
			c.buf.WriteByte(b)
		}
	}
}

func (c *textCopy) int(i int64) {
	c.sep()
	c.buf.Write(strconv.AppendInt(c.scratch[:0], i, 10))
}

func (c *textCopy) optInt(i int64) {
	if i == 0 {
		c.null()
		return
	}
	c.int(i)
}

func (c *textCopy) bool(b bool) {
	c.sep()
	if b {
		c.buf.WriteByte('t')
	} else {
		c.buf.WriteByte('f')
	}
}

// dec writes an exact decimal.
func (c *textCopy) dec(d decimal.Decimal) {
	c.sep()
	c.buf.Write(tariff.AppendDecimal(c.scratch[:0], d))
}

// time writes an instant (NULL when zero) in UTC.
func (c *textCopy) time(t time.Time) {
	if t.IsZero() {
		c.null()
		return
	}
	c.sep()
	c.buf.Write(appendUTC(c.scratch[:0], t))
}

// appendUTC appends t in UTC as t.UTC().AppendFormat(dst,
// "2006-01-02 15:04:05.999999Z07:00") does, without parsing the layout.
func appendUTC(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	dst = tariff.AppendDate(dst, tariff.Date{Year: y, Month: mo, Day: d})
	dst = append(dst, ' ', byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10))
	if us := t.Nanosecond() / 1000; us > 0 {
		frac := [7]byte{'.'}
		for i := 6; i > 0; i-- {
			frac[i] = byte('0' + us%10)
			us /= 10
		}
		n := 7
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z')
}

// date writes a calendar date (NULL when zero).
func (c *textCopy) date(d tariff.Date) {
	if d.IsZero() {
		c.null()
		return
	}
	c.sep()
	c.buf.Write(tariff.AppendDate(c.scratch[:0], d))
}

// strArray writes a text[] literal.
func (c *textCopy) strArray(ss []string) {
	c.sep()
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(arrayQuoter.Replace(s))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	c.escaped(b.String())
}

var arrayQuoter = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// copyText sends the rows to table's columns.
func copyText(ctx context.Context, tx pgx.Tx, table string, cols []string, c *textCopy) error {
	if c.rows == 0 {
		return nil
	}
	if b := c.buf.Bytes(); b[len(b)-1] != '\n' {
		c.buf.WriteByte('\n')
	}
	sql := fmt.Sprintf("copy %s (%s) from stdin", pgx.Identifier{table}.Sanitize(), joinCols(cols))
	// From a reader over the buffer, which stays whole for a second try.
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.buf.Bytes()), sql); err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	return nil
}
