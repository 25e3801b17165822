package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest config file Load and Parse accept.
const MaxFileSize = 1 << 20

// Defaults of the keys that Default cannot set, because they live in
// optional sections or in list items.
const (
	DefaultPeerTimeout       = Duration(time.Second)
	DefaultStartTimeout      = Duration(30 * time.Second)
	DefaultStopTimeout       = Duration(30 * time.Second)
	DefaultReadyTimeout      = Duration(2 * time.Second)
	DefaultReadyInterval     = Duration(250 * time.Millisecond)
	DefaultStopGrace         = Duration(10 * time.Second)
	DefaultRestartBackoff    = Duration(500 * time.Millisecond)
	DefaultRestartBackoffMax = Duration(30 * time.Second)
	DefaultPollInterval      = Duration(time.Second)
	DefaultDockerStopTimeout = Duration(10 * time.Second)
	DefaultTrunkExpiry       = Duration(300 * time.Second)
	DefaultMinExpires        = Duration(60 * time.Second)
	DefaultMaxExpires        = Duration(3600 * time.Second)
	DefaultRetryAfter        = Duration(5 * time.Second)
	DefaultHealthInterval    = Duration(time.Second)
	DefaultHealthTimeout     = Duration(500 * time.Millisecond)
)

// Default returns a config holding the defaults of the top-level keys,
// which a file is decoded over.
func Default() *Config {
	return &Config{
		Mode:     "manual",
		StateDir: "/var/lib/resilience",
		Log:      Log{Level: "info", Format: "text"},
	}
}

// Load reads and parses the config file at path; see Parse. Relative paths
// inside the file resolve against the file's folder, made absolute. An error
// reading the file is returned wrapped; a problem in its content is Errors.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(path, filepath.Dir(abs), data)
}

// Parse decodes and validates the config in data, read from file: file
// names the config in messages, and relative paths in it resolve against
// filepath.Dir(file) (Load passes an absolute folder). It starts
// from Default, decodes strictly (an unknown or duplicate key, a wrong type,
// a second YAML document are errors), sets the defaults of keys the file
// leaves out, resolves relative paths, then runs Validate. On failure the
// error is Errors, every problem found, each naming the file, the line and
// the key path.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, filepath.Dir(file), data)
}

func parse(file, dir string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{File: file, Msg: "file is larger than 1 MiB"}}
	}
	root, err := parseNode(file, data)
	if err != nil {
		return nil, err
	}

	w := newWalker(file)
	w.walk(root, reflect.TypeFor[Config](), "")
	if w.fatal {
		return nil, finish(file, w.errs)
	}

	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		// The walk should have caught whatever yaml.v3 refuses; if it did
		// not, yaml.v3's own messages are better than nothing.
		var te *yaml.TypeError
		if len(w.errs) == 0 {
			w.errs = translate(file, w.lines, err)
		}
		if !errors.As(err, &te) {
			// A fatal error leaves the struct half decoded.
			return nil, finish(file, w.errs)
		}
	}
	c.File = file
	c.lines = w.lines
	setDefaults(c, w)
	resolvePaths(c, dir)

	errs := w.errs
	for _, e := range c.validate() {
		if !suppressed(e.Path, w.suppress) {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, finish(file, errs)
	}
	return c, nil
}

// finish sorts the problems by line, drops repeats (an alias walked twice
// can report the same problem twice) and caps their number.
func finish(file string, errs Errors) Errors {
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	seen := make(map[Error]bool, len(errs))
	errs = slices.DeleteFunc(errs, func(e *Error) bool {
		dup := seen[*e]
		seen[*e] = true
		return dup
	})
	if len(errs) > maxErrors {
		n := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &Error{File: file, Msg: fmt.Sprintf("too many errors (%d more)", n)})
	}
	return errs
}

// suppressed reports whether path is, or is under, one of the paths whose
// value could not be decoded.
func suppressed(path string, under []string) bool {
	for _, u := range under {
		if u == "" || path == u || strings.HasPrefix(path, u+".") || strings.HasPrefix(path, u+"[") {
			return true
		}
	}
	return false
}

// parseNode parses data into a node tree and returns its root, refusing an
// empty file and a second document.
func parseNode(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, Errors{{File: file, Msg: "file is empty"}}
		}
		return nil, Errors{syntaxError(file, data, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, Errors{{File: file, Line: next.Line, Msg: "a second YAML document: the config must be one document"}}
	case err != io.EOF:
		return nil, Errors{syntaxError(file, data, err)}
	}
	if len(doc.Content) != 1 {
		return nil, Errors{{File: file, Msg: "file is empty"}}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == nullTag {
		return nil, Errors{{File: file, Msg: "file is empty"}}
	}
	return root, nil
}

// syntaxError turns a yaml.v3 parse error into an Error with the right line.
func syntaxError(file string, data []byte, err error) *Error {
	line, msg := splitLine(strings.TrimPrefix(err.Error(), "yaml: "))
	switch {
	case parserProblem(msg):
		// yaml.v3 prints the parser's 0-based line (the scanner's
		// 1-based), and the line where the enclosing block starts rather
		// than the line of the problem.
		line = problemLine(data, msg, line+1)
	case readerProblem(msg):
		line = badCharLine(data)
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		line = lineOf(data, bytes.Index(data, []byte("*"+name)))
	case line == 0:
		// yaml.v3 leaves out "line 1".
		line = 1
	}
	if n := len(lineStarts(data)); line > n {
		// The end of the file, past its last newline.
		line = n
	}
	if line > 0 && (strings.Contains(msg, "tab character") || msg == "found character that cannot start any token") &&
		bytes.Contains(lineText(data, line), []byte("\t")) {
		msg += " (indent with spaces, not tabs)"
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// problemLine returns the line where a parser problem shows up: the end of
// the shortest run of whole lines, from the start, that fails to parse with
// the same message. from is the line yaml.v3 reported, a lower bound.
func problemLine(data []byte, msg string, from int) int {
	starts := lineStarts(data)
	ends := append(starts[1:], len(data)) // ends[i] is the offset past line i+1
	fails := func(n int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[n-1]]))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if err == nil {
				continue
			}
			_, m := splitLine(strings.TrimPrefix(err.Error(), "yaml: "))
			return err != io.EOF && m == msg
		}
	}
	lo, hi := max(from, 1), len(ends)
	if lo >= hi || !fails(hi) {
		return from
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// splitLine splits "line N: message" into N and message.
func splitLine(s string) (int, string) {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, s
	}
	num, msg, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, s
	}
	return n, msg
}

// parserProblem reports the problems set by the YAML parser, as opposed to
// its scanner and reader.
func parserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"did not find expected '-' indicator",
		"did not find expected <document start>",
		"did not find expected <stream-start>",
		"did not find expected key",
		"did not find expected node content",
		"found duplicate %TAG directive",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// readerProblem reports the problems set by the YAML reader, which decodes
// characters and knows no line.
func readerProblem(msg string) bool {
	switch msg {
	case "control characters are not allowed",
		"invalid Unicode character",
		"invalid leading UTF-8 octet",
		"invalid trailing UTF-8 octet",
		"invalid length of a UTF-8 sequence",
		"incomplete UTF-8 octet sequence":
		return true
	}
	return false
}

// badCharLine returns the line of the first byte that is not valid UTF-8 or
// is a character YAML does not allow, 0 if there is none.
func badCharLine(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 || !yamlChar(r) {
			return lineOf(data, i)
		}
		i += size
	}
	return 0
}

// yamlChar reports whether YAML allows r in a document.
func yamlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
		r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
}

// lineStarts returns the offset of the start of each line of data, as YAML
// counts lines: a line break is LF, CR, CRLF, NEL, LS or PS.
func lineStarts(data []byte) []int {
	starts := []int{0}
	for i := 0; i < len(data); {
		n := 0
		switch {
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			n = 2
		case data[i] == '\n' || data[i] == '\r':
			n = 1
		case bytes.HasPrefix(data[i:], []byte("\u0085")):
			n = 2
		case bytes.HasPrefix(data[i:], []byte("\u2028")) || bytes.HasPrefix(data[i:], []byte("\u2029")):
			n = 3
		}
		if n == 0 {
			i++
			continue
		}
		i += n
		if i < len(data) {
			starts = append(starts, i)
		}
	}
	return starts
}

// lineOf returns the 1-based line of byte offset off, 0 if off < 0.
func lineOf(data []byte, off int) int {
	if off < 0 {
		return 0
	}
	starts := lineStarts(data)
	n, found := slices.BinarySearch(starts, off)
	if !found {
		n-- // off is inside line n (0-based)
	}
	return n + 1
}

// lineText returns the text of 1-based line n, with its line break.
func lineText(data []byte, n int) []byte {
	starts := lineStarts(data)
	if n < 1 || n > len(starts) {
		return nil
	}
	if n == len(starts) {
		return data[starts[n-1]:]
	}
	return data[starts[n-1]:starts[n]]
}

// translate turns the errors of a yaml.v3 struct decode ("line N: ...")
// into Errors, with the path of the key found at that line.
func translate(file string, lines map[string]int, err error) Errors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs Errors
	for _, m := range msgs {
		line, msg := splitLine(m)
		path := ""
		for p, l := range lines {
			// The deepest path on the line; the shorter name on a tie, so
			// the choice does not depend on map order.
			if l == line && (len(p) > len(path) || len(p) == len(path) && p < path) {
				path = p
			}
		}
		if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ") {
			msg = "unknown key"
		}
		errs = append(errs, &Error{File: file, Line: line, Path: path, Msg: msg})
	}
	return errs
}

// setDefaults fills in the keys that the file leaves out (or sets to null)
// in optional sections and list items, which Default cannot reach, and the
// initial status, which depends on the role.
func setDefaults(c *Config, w *walker) {
	def := func(d *Duration, path string, v Duration) {
		if *d == 0 && !w.explicit(path) {
			*d = v
		}
	}
	if c.Kind == KindCC && !w.explicit("mode") {
		c.Mode = "follow"
	}
	if t := c.Trunk; t != nil {
		for i := range t.MDS {
			def(&t.MDS[i].Expiry, index("trunk.mds", i)+".expiry", DefaultTrunkExpiry)
		}
	}
	if e := c.Edge; e != nil {
		def(&e.RetryAfter, "edge.retry_after", DefaultRetryAfter)
		if t := e.TLS; t != nil && t.CertFile == "" && t.KeyFile == "" {
			e.TLS = nil
		}
	}
	edgeBackend := func(p string, b *Backend, route, side string) {
		if b.Name == "" {
			b.Name = b.Node + "-" + route
		}
		if h := b.Health; h != nil {
			def(&h.Interval, p+".health.interval", DefaultHealthInterval)
			def(&h.Timeout, p+".health.timeout", DefaultHealthTimeout)
			if h.Rise == 0 && !w.explicit(p+".health.rise") {
				h.Rise = 2
			}
			if h.Fall == 0 && !w.explicit(p+".health.fall") {
				h.Fall = 2
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.PathPrefix == "" {
			r.PathPrefix = "/"
		}
		edgeBackend(index("routes", i)+".main", &r.Main, r.Name, "main")
		edgeBackend(index("routes", i)+".standby", &r.Standby, r.Name, "standby")
	}
	for i := range c.SIP {
		r := &c.SIP[i]
		edgeBackend(index("sip", i)+".main", &r.Main, r.Name, "main")
		edgeBackend(index("sip", i)+".standby", &r.Standby, r.Name, "standby")
	}
	if r := c.Registrar; r != nil {
		def(&r.MinExpires, "registrar.min_expires", DefaultMinExpires)
		def(&r.MaxExpires, "registrar.max_expires", DefaultMaxExpires)
		def(&r.DefaultExpires, "registrar.default_expires", DefaultTrunkExpiry)
		if r.Realm == "" {
			r.Realm = c.Name
		}
	}
	if c.XiVO != nil {
		def(&c.XiVO.PollInterval, "xivo.poll_interval", DefaultPollInterval)
		def(&c.XiVO.Timeout, "xivo.timeout", DefaultPeerTimeout)
	}
	if c.InitialStatus == "" && c.Kind == KindCC {
		c.InitialStatus = "inactive"
	}
	if c.InitialStatus == "" {
		switch c.Role {
		case RoleMain:
			c.InitialStatus = "active"
		case RoleStandby:
			c.InitialStatus = "inactive"
		}
	}
	if t := c.Listen.TLS; t != nil && t.CertFile == "" && t.KeyFile == "" {
		c.Listen.TLS = nil
	}
	if c.Peer != nil {
		def(&c.Peer.Timeout, "peer.timeout", DefaultPeerTimeout)
	}
	for i := range c.Services {
		s := &c.Services[i]
		p := index("services", i)
		def(&s.StartTimeout, p+".start_timeout", DefaultStartTimeout)
		def(&s.StopTimeout, p+".stop_timeout", DefaultStopTimeout)
		if r := s.Ready; r != nil {
			def(&r.Timeout, p+".ready.timeout", DefaultReadyTimeout)
			def(&r.Interval, p+".ready.interval", DefaultReadyInterval)
		}
		if e := s.Exec; e != nil {
			def(&e.StopGrace, p+".exec.stop_grace", DefaultStopGrace)
			def(&e.RestartBackoff, p+".exec.restart_backoff", DefaultRestartBackoff)
			def(&e.RestartBackoffMax, p+".exec.restart_backoff_max", DefaultRestartBackoffMax)
		}
		if d := s.Docker; d != nil {
			def(&d.StopTimeout, p+".docker.stop_timeout", DefaultDockerStopTimeout)
		}
	}
}

// resolvePaths makes the relative paths of the file relative to dir.
func resolvePaths(c *Config, dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.StateDir)
	if t := c.Listen.TLS; t != nil {
		abs(&t.CertFile)
		abs(&t.KeyFile)
	}
	if p := c.Peer; p != nil {
		abs(&p.CAFile)
		abs(&p.Token.File)
	}
	if f := c.XiVO; f != nil {
		abs(&f.CAFile)
		abs(&f.Token.File)
	}
	if t := c.Trunk; t != nil {
		for i := range t.MDS {
			abs(&t.MDS[i].Password.File)
		}
	}
	if e := c.Edge; e != nil {
		abs(&e.MaintenancePage)
		if t := e.TLS; t != nil {
			abs(&t.CertFile)
			abs(&t.KeyFile)
		}
	}
	for i := range c.Nodes {
		abs(&c.Nodes[i].CAFile)
		abs(&c.Nodes[i].Token.File)
	}
	if r := c.Registrar; r != nil {
		for i := range r.Users {
			abs(&r.Users[i].Password.File)
		}
	}
	for i := range c.Services {
		if e := c.Services[i].Exec; e != nil {
			abs(&e.Dir)
			abs(&e.LogFile)
		}
	}
}
