package protocol

import (
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxSkipDepth bounds the nesting of unknown fields' values, which are
// skipped recursively.
const maxSkipDepth = 100

// scanner is a strict RFC 8259 tokenizer over one payload. It hands out
// string and number text as substrings of the payload, so the common case
// (no escapes in strings) allocates nothing; numbers are returned as their
// exact decimal text for meter.ParseScaled.
//
// Every method that reads a value expects i at the value's first byte and
// leaves it just past the value. Syntax errors are returned as *Error with
// Reason MalformedJSON.
type scanner struct {
	s string
	i int
}

func (sc *scanner) syntax(format string, args ...any) error {
	return &Error{Reason: MalformedJSON, Detail: fmt.Sprintf(format, args...) + fmt.Sprintf(" at offset %d", sc.i)}
}

// ws skips insignificant whitespace.
func (sc *scanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// peek returns the byte at i, or 0 at the end of input.
func (sc *scanner) peek() byte {
	if sc.i < len(sc.s) {
		return sc.s[sc.i]
	}
	return 0
}

// more is the loop condition of an object or array whose opening bracket
// has been consumed: it reports whether another member or element follows,
// consuming the separating comma, or consumes the closing bracket and
// reports false. first is true before the first element.
func (sc *scanner) more(closing byte, first bool) (bool, error) {
	sc.ws()
	if sc.i >= len(sc.s) {
		return false, sc.syntax("unexpected end of input")
	}
	c := sc.s[sc.i]
	if c == closing {
		sc.i++
		return false, nil
	}
	if !first {
		if c != ',' {
			return false, sc.syntax("expected ',' or '%c', found %q", closing, c)
		}
		sc.i++
		sc.ws()
	}
	return true, nil
}

// key reads an object member's name and the colon after it, leaving i at
// the member's value.
func (sc *scanner) key() (string, error) {
	if sc.peek() != '"' {
		return "", sc.syntax("expected a field name")
	}
	k, err := sc.str()
	if err != nil {
		return "", err
	}
	sc.ws()
	if sc.peek() != ':' {
		return "", sc.syntax("expected ':' after field name")
	}
	sc.i++
	sc.ws()
	return k, nil
}

// str reads a string, returning its unescaped content.
func (sc *scanner) str() (string, error) {
	start := sc.i + 1
	for i := start; i < len(sc.s); i++ {
		switch c := sc.s[i]; {
		case c == '"':
			sc.i = i + 1
			return sc.s[start:i], nil
		case c == '\\':
			return sc.strEscaped(start)
		case c < 0x20:
			sc.i = i
			return "", sc.syntax("control character in string")
		}
	}
	sc.i = len(sc.s)
	return "", sc.syntax("unterminated string")
}

// strEscaped is the slow path of str for strings with escape sequences.
func (sc *scanner) strEscaped(start int) (string, error) {
	var b strings.Builder
	i := start
	for i < len(sc.s) {
		c := sc.s[i]
		switch {
		case c == '"':
			sc.i = i + 1
			return b.String(), nil
		case c < 0x20:
			sc.i = i
			return "", sc.syntax("control character in string")
		case c != '\\':
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(sc.s) {
			break
		}
		i++
		switch sc.s[i] {
		case '"', '\\', '/':
			b.WriteByte(sc.s[i])
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(sc.s, i+1)
			if !ok {
				sc.i = i
				return "", sc.syntax("bad \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// A surrogate pair is two escapes; a lone surrogate
				// becomes U+FFFD, as encoding/json does.
				if r2, ok := hex4(sc.s, i+3); ok && sc.s[i+1] == '\\' && sc.s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			b.WriteRune(r)
		default:
			sc.i = i
			return "", sc.syntax("bad escape sequence")
		}
		i++
	}
	sc.i = len(sc.s)
	return "", sc.syntax("unterminated string")
}

// hex4 decodes the four hex digits at s[i:i+4].
func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// num reads a number and returns its text, which follows the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (a subset of what
// meter.ParseScaled accepts).
func (sc *scanner) num() (string, error) {
	s, i := sc.s, sc.i
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i)
	default:
		sc.i = i
		return "", sc.syntax("bad number")
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			sc.i = j
			return "", sc.syntax("bad number: no digits after '.'")
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			sc.i = j
			return "", sc.syntax("bad number: no digits in exponent")
		}
		i = j
	}
	sc.i = i
	return s[start:i], nil
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// literal consumes the literal word (true, false or null) at i.
func (sc *scanner) literal(word string) error {
	if !strings.HasPrefix(sc.s[sc.i:], word) {
		return sc.syntax("invalid literal")
	}
	sc.i += len(word)
	return nil
}

// kind classifies the value at i by its first byte: '{', '[', '"', '0'
// (number), 't' (true or false), 'n' (null), or 0 when no value can start
// there.
func (sc *scanner) kind() byte {
	switch c := sc.peek(); c {
	case '{', '[', '"', 'n':
		return c
	case 't', 'f':
		return 't'
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return '0'
	}
	return 0
}

// kindName names a kind for error details.
func kindName(k byte) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "invalid"
}

// skip validates and skips any value; depth is the nesting level at which
// skipping started.
func (sc *scanner) skip(depth int) error {
	if depth > maxSkipDepth {
		return sc.syntax("nesting deeper than %d levels", maxSkipDepth)
	}
	switch sc.peek() {
	case '{':
		sc.i++
		for first := true; ; first = false {
			ok, err := sc.more('}', first)
			if err != nil || !ok {
				return err
			}
			if _, err := sc.key(); err != nil {
				return err
			}
			if err := sc.skip(depth + 1); err != nil {
				return err
			}
		}
	case '[':
		sc.i++
		for first := true; ; first = false {
			ok, err := sc.more(']', first)
			if err != nil || !ok {
				return err
			}
			if err := sc.skip(depth + 1); err != nil {
				return err
			}
		}
	case '"':
		_, err := sc.str()
		return err
	case 't':
		return sc.literal("true")
	case 'f':
		return sc.literal("false")
	case 'n':
		return sc.literal("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		_, err := sc.num()
		return err
	case 0:
		if sc.i >= len(sc.s) {
			return sc.syntax("unexpected end of input")
		}
	}
	return sc.syntax("unexpected character %q", sc.s[sc.i])
}
