package config

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem found in a config file. It prints as
// FILE:LINE: KEY.PATH: message, leaving out the parts it does not know:
// a syntax error has no path, a file that is too large has no line, and a
// config built in Go rather than read from a file has neither file nor line.
type Error struct {
	// File is the file name as given to Load or Parse.
	File string
	// Line is the 1-based line of the key or list item; 0 if unknown.
	Line int
	// Path is the key path, such as services[2].ready.timeout, with list
	// indexes counted from 0; empty for a syntax error.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats the problem as FILE:LINE: KEY.PATH: message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file, in line order. Load,
// Parse and Validate return it (as an error) so that a command can print
// each problem on its own line.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.As.
func (es Errors) Unwrap() []error {
	s := make([]error, len(es))
	for i, e := range es {
		s[i] = e
	}
	return s
}

// maxErrors is the most problems reported for one file; past it the
// remaining ones are counted, not listed.
const maxErrors = 100

// quote returns s in double quotes, shortened if it is long, for messages.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
