package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// String formats the duration as Go does, "1.5s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a Go duration string such as "300ms" or "1.5s". It
// refuses a negative duration and a bare number, whose unit would be a
// guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(`line %d: must be a duration, e.g. "1.5s"`, n.Line)}}
	}
	v, msg := parseDuration(n.Value)
	if msg != "" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a string, the way UnmarshalYAML reads
// it back.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// parseDuration parses the text of a scalar; it returns a message instead
// of an error, for the caller to place.
func parseDuration(s string) (Duration, string) {
	if isNumber(s) {
		return 0, fmt.Sprintf("invalid duration %s: missing unit (e.g. %s)", quote(s), quote(s+"s"))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Sprintf("invalid duration %s", quote(s))
	}
	if v < 0 {
		return 0, fmt.Sprintf("invalid duration %s: must not be negative", quote(s))
	}
	return Duration(v), ""
}

// isNumber reports whether s is a plain decimal number, such as 5 or 1.5.
func isNumber(s string) bool {
	if strings.ContainsFunc(s, unicode.IsLetter) {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}
