package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Canonicalize returns the canonical text of the JSON value raw: compact, strings
// escaped as the protocol writes them, numbers and member order as they are. It
// fails if raw is not one JSON value, is not UTF-8, or holds a number too large
// for a double (1e999).
func Canonicalize(raw []byte) (json.RawMessage, error) {
	return appendCanonical(make([]byte, 0, len(raw)), raw)
}

func appendCanonical(dst, raw []byte) ([]byte, error) {
	if !json.Valid(raw) {
		var v any
		err := json.Unmarshal(raw, &v)
		if err == nil { // json.Valid and json.Unmarshal disagree: never seen
			err = errors.New("invalid JSON")
		}
		return dst, err
	}
	if !utf8.Valid(raw) {
		return dst, errors.New("invalid UTF-8")
	}
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			end := stringEnd(raw, i)
			dst = appendStringToken(dst, raw[i:end])
			i = end
		case c == '-' || '0' <= c && c <= '9':
			end := i + 1
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			number := raw[i:end]
			if f, _ := strconv.ParseFloat(string(number), 64); math.IsInf(f, 0) {
				return dst, fmt.Errorf("number %.32s is out of range", number)
			}
			dst = append(dst, number...)
			i = end
		default: // punctuation, and the letters of true, false and null
			dst = append(dst, c)
			i++
		}
	}
	return dst, nil
}

// stringEnd returns the index just past the string token that starts at raw[start].
func stringEnd(raw []byte, start int) int {
	for i := start + 1; ; i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// appendStringToken appends the canonical form of a valid JSON string token.
func appendStringToken(dst, token []byte) []byte {
	for _, c := range token[1 : len(token)-1] {
		if c == '\\' {
			var s string
			_ = json.Unmarshal(token, &s) // valid: checked by the caller
			return appendString(dst, s)
		}
	}
	return append(dst, token...) // nothing escaped, so nothing to unescape
}

// appendString appends s as a JSON string: only '"', '\\' and control characters
// are escaped (\b \f \n \r \t, the others as \u00xx); invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
		i++
	}
	return append(dst, '"')
}

// appendFloat appends f in the shortest form that reads back as f, always with a
// fraction or an exponent, switching to the exponent form where Python's repr does
// (0.75, 1.0, 1e-05, 1e+16).
func appendFloat(dst []byte, f float64) []byte {
	scientific := strconv.FormatFloat(f, 'e', -1, 64) // "d.ddde±XX"
	exponent, _ := strconv.Atoi(scientific[strings.IndexByte(scientific, 'e')+1:])
	if f != 0 && (exponent < -4 || exponent >= 16) {
		return append(dst, scientific...)
	}
	dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
	if math.Trunc(f) == f {
		dst = append(dst, '.', '0')
	}
	return dst
}

// appendTimestamp appends t as RFC 3339 in UTC with a Z, with six fraction digits
// when the microseconds are not zero and none otherwise.
func appendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC().Truncate(time.Microsecond)
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05")
	if t.Nanosecond() != 0 {
		dst = t.AppendFormat(dst, ".000000")
	}
	return append(dst, 'Z')
}

// parseTimestamp reads an RFC 3339 timestamp ("t", "z" and a space separator
// accepted; no offset means UTC) as UTC, truncated to microseconds.
func parseTimestamp(s string) (time.Time, error) {
	b := []byte(s)
	for i, c := range b {
		if c == 't' || c == 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	if len(b) > 10 && b[10] == ' ' {
		b[10] = 'T'
	}
	t, err := time.Parse("2006-01-02T15:04:05Z07:00", string(b))
	if err != nil {
		t, err = time.ParseInLocation("2006-01-02T15:04:05", string(b), time.UTC)
	}
	if err != nil {
		return t, fmt.Errorf("not an RFC 3339 timestamp: %s", quoteShort(s))
	}
	t = t.UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return t, errors.New("date value out of range")
	}
	return t.Truncate(time.Microsecond), nil
}
