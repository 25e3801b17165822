package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, and that it returns either a
// valid config or problems that each print as one non-empty line.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(base + oneService))
	f.Add([]byte("a: &a {<<: *a}\n"))
	f.Add([]byte("services: [&s {name: a, command: {start: a, stop: b}}, *s]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkWalk(t, data)
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate after a successful Parse: %v", err)
			}
			return
		}
		if c != nil {
			t.Errorf("Parse returned a config with the error %v", err)
		}
		errs, ok := err.(Errors)
		if !ok || len(errs) == 0 {
			t.Fatalf("Parse error is %T %q, want non-empty Errors", err, err)
		}
		lines := len(lineStarts(data))
		for _, e := range errs {
			s := e.Error()
			if e.Line < 0 || e.Line > lines {
				t.Errorf("problem %q is past the last line, %d", s, lines)
			}
			if e.Msg == "" || strings.ContainsAny(s, "\n\r") {
				t.Errorf("bad problem %q", s)
			}
			if e.File != "f.yaml" {
				t.Errorf("problem %q does not name the file", s)
			}
		}
	})
}

// checkWalk checks that the walk finds every problem the strict decode of
// yaml.v3 finds, so that Parse seldom falls back to yaml.v3's messages.
func checkWalk(t *testing.T, data []byte) {
	if len(data) > MaxFileSize {
		return
	}
	root, err := parseNode("f.yaml", data)
	if err != nil {
		return
	}
	w := newWalker("f.yaml")
	w.walk(root, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 || w.fatal {
		return
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) && strings.Contains(err.Error(), "excessive aliasing") {
			return // yaml.v3 counts aliases more strictly than the walk
		}
		t.Errorf("the walk found nothing, yaml.v3 found: %v", err)
	}
}
