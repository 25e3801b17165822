package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The walk checks the YAML node tree against the shape of Config before
// the struct is decoded, so that every problem of shape (unknown key,
// duplicate key, wrong type, bad duration) is reported at once, each with
// its key path and line. It also records the line of every key path, for
// Validate, and which keys are set to null, for the defaults.

// YAML short tags.
const (
	nullTag = "!!null"
	boolTag = "!!bool"
	intTag  = "!!int"
	strTag  = "!!str"
	seqTag  = "!!seq"
	mapTag  = "!!map"
)

// Limits that keep a hostile file from costing much: a visit is a node or
// a key looked at, counting each expansion of an alias; a mapping with more
// keys than maxKeys is refused before yaml.v3's quadratic check of duplicate
// keys sees it.
const (
	maxVisits = 1 << 20
	maxKeys   = 10000
)

// result is what the walk found at one value.
type result int

const (
	resOK   result = iota // the value has the right shape
	resNull               // the value is null: the key counts as absent
	resBad                // the value is reported and will not be decoded
)

type walker struct {
	file  string
	lines map[string]int  // key path -> line of the key or list item
	nulls map[string]bool // key paths whose value is null
	errs  Errors
	// suppress lists paths whose decoded value is unreliable, so that
	// Validate's complaints about them are not shown on top of the cause.
	suppress  []string
	expanding map[*yaml.Node]bool // aliases being walked, to stop cycles
	visits    int
	// fatal stops the walk: yaml.v3 would fail to decode, or the file is
	// too costly to look at further.
	fatal bool
}

func newWalker(file string) *walker {
	return &walker{
		file:      file,
		lines:     make(map[string]int),
		nulls:     make(map[string]bool),
		expanding: make(map[*yaml.Node]bool),
	}
}

func (w *walker) errorf(line int, path, format string, args ...any) {
	if len(w.errs) >= maxErrors {
		w.fatal = true
		return
	}
	w.errs = append(w.errs, &Error{File: w.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) fail(line int, path, format string, args ...any) {
	w.errorf(line, path, format, args...)
	w.fatal = true
}

func (w *walker) record(path string, line int) {
	if _, ok := w.lines[path]; !ok {
		w.lines[path] = line
	}
}

// line returns the recorded line of path (its key), or the node's own.
func (w *walker) line(path string, n *yaml.Node) int {
	if l, ok := w.lines[path]; ok {
		return l
	}
	return n.Line
}

func (w *walker) suppressPath(path string) { w.suppress = append(w.suppress, path) }

// visit counts one step of the walk and reports whether to go on.
func (w *walker) visit(n *yaml.Node, path string) bool {
	if w.fatal {
		return false
	}
	w.visits++
	if w.visits > maxVisits {
		w.fail(n.Line, path, "document contains excessive aliasing")
		return false
	}
	return true
}

// explicit reports whether the file sets path to a value other than null.
func (w *walker) explicit(path string) bool {
	_, ok := w.lines[path]
	return ok && !w.nulls[path]
}

// walk checks n against the Go type t, at key path path.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) result {
	if !w.visit(n, path) {
		return resBad
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || w.expanding[n] {
			w.fail(w.line(path, n), path, "alias *%s refers to itself", n.Value)
			return resBad
		}
		w.expanding[n] = true
		defer delete(w.expanding, n)
		return w.walk(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag {
		return resNull
	}
	if badTag(n) {
		w.errorf(w.line(path, n), path, "explicit tag %s is not supported", n.Tag)
		w.suppressPath(path)
		return resBad
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[Duration]() {
		if n.Kind != yaml.ScalarNode {
			return w.mismatch(n, t, path)
		}
		if _, msg := parseDuration(n.Value); msg != "" {
			w.errorf(w.line(path, n), path, "%s", msg)
			w.suppressPath(path)
			return resBad
		}
		return resOK
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return w.mismatch(n, t, path)
		}
		if !w.mapping(n, path, make(map[string]bool), func(key string) (reflect.Type, bool) {
			return fieldType(t, key)
		}) {
			return resBad
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
			return w.mismatch(n, t, path)
		}
		elem := t.Elem()
		if !w.mapping(n, path, make(map[string]bool), func(string) (reflect.Type, bool) {
			return elem, true
		}) {
			return resBad
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return w.mismatch(n, t, path)
		}
		for i, item := range n.Content {
			ip := index(path, i)
			w.record(ip, item.Line)
			switch w.walk(item, t.Elem(), ip) {
			case resNull:
				// yaml.v3 drops a null item, which would shift the
				// indexes of the items after it.
				w.errorf(item.Line, ip, "%s", expect(t.Elem()))
				w.suppressPath(path)
			case resBad:
				w.suppressPath(path)
			}
			if w.fatal {
				break
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return w.mismatch(n, t, path)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != boolTag {
			return w.mismatch(n, t, path)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != intTag {
			return w.mismatch(n, t, path)
		}
	}
	return resOK
}

func (w *walker) mismatch(n *yaml.Node, t reflect.Type, path string) result {
	msg := expect(t)
	if path == "" {
		msg = "the top level " + msg
	}
	w.errorf(w.line(path, n), path, "%s", msg)
	w.suppressPath(path)
	return resBad
}

// expect names the YAML type that a Go type is written as.
func expect(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[Duration]():
		return `must be a duration, e.g. "1.5s"`
	case reflect.TypeFor[Secret]():
		return "must be a mapping with env or file, e.g. {env: PEER_TOKEN}"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "must be a mapping"
	case reflect.Slice:
		return "must be a list"
	case reflect.Bool:
		return "must be a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "must be an integer"
	default:
		return "must be a string"
	}
}

// mapping checks the keys of a mapping node and walks their values. seen
// holds the keys already set by a mapping that merges this one (<<), which
// take precedence, as yaml.v3 does it. It returns false if yaml.v3 will not
// decode the mapping at all, because a key is repeated.
func (w *walker) mapping(n *yaml.Node, path string, seen map[string]bool, field func(string) (reflect.Type, bool)) bool {
	if len(n.Content)/2 > maxKeys {
		w.fail(w.line(path, n), path, "more than %d keys", maxKeys)
		return false
	}
	ok := true
	first := make(map[string]int, len(n.Content)/2)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !w.visit(n, path) {
			return false
		}
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == nullTag || (badTag(k) && !isMerge(k)) {
			w.errorf(k.Line, path, "keys must be strings")
			continue
		}
		kp := join(path, k.Value)
		if line, dup := first[k.Value]; dup {
			// yaml.v3 then skips the whole mapping.
			w.errorf(k.Line, kp, "duplicate key (first at line %d)", line)
			w.suppressPath(path)
			ok = false
			continue
		}
		first[k.Value] = k.Line
		if isMerge(k) {
			merges = append(merges, v)
			continue
		}
		if seen[k.Value] {
			continue
		}
		seen[k.Value] = true
		w.record(kp, k.Line)
		t, ok := field(k.Value)
		if !ok {
			w.errorf(k.Line, kp, "unknown key")
			continue
		}
		if w.walk(v, t, kp) == resNull {
			w.nulls[kp] = true
		}
	}
	for _, m := range merges {
		w.merge(m, path, seen, field)
	}
	return ok
}

// merge walks the value of a merge key (<<): a mapping, an alias of one,
// or a list of those.
func (w *walker) merge(v *yaml.Node, path string, seen map[string]bool, field func(string) (reflect.Type, bool)) {
	one := func(m *yaml.Node) {
		if m.Kind == yaml.MappingNode {
			w.mapping(m, path, seen, field)
			return
		}
		if m.Kind != yaml.AliasNode || m.Alias == nil || m.Alias.Kind != yaml.MappingNode {
			w.fail(m.Line, path, "merge (<<) needs a mapping or a list of mappings")
			return
		}
		if w.expanding[m] {
			w.fail(m.Line, path, "alias *%s refers to itself", m.Value)
			return
		}
		w.expanding[m] = true
		w.mapping(m.Alias, path, seen, field)
		delete(w.expanding, m)
	}
	if v.Kind != yaml.SequenceNode {
		one(v)
		return
	}
	for _, m := range v.Content {
		if !w.visit(m, path) {
			return
		}
		one(m)
	}
}

// isMerge reports whether k is a merge key, as yaml.v3 decides it.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" &&
		(k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

// badTag reports an explicit tag other than the one the node has anyway.
// yaml.v3 would convert or refuse such values in ways the walk does not
// follow, and a config has no use for them.
func badTag(n *yaml.Node) bool {
	if n.Style&yaml.TaggedStyle == 0 {
		return false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return n.ShortTag() != strTag
	case yaml.MappingNode:
		return n.ShortTag() != mapTag
	case yaml.SequenceNode:
		return n.ShortTag() != seqTag
	}
	return true
}

// fieldType returns the type of the field of struct t whose YAML key is key.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f.Type, true
		}
	}
	return nil, false
}

// join appends a key to a path: listen.address, or exec.env["A.B"] for a
// key that is not a plain word.
func join(path, key string) string {
	if !plainKey(key) {
		return path + "[" + quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a list index to a path: services[2].
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parent returns the path one level up, "" for a top-level key.
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

func plainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
