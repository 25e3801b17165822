package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

var (
	nodeNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	serviceNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	bcryptRE      = regexp.MustCompile(`^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}$`)
	tokenHashRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Validate checks the values of a decoded config: required keys, allowed
// values, formats, uniqueness, and TLS on a non-loopback listener. It
// expects the defaults to be set, as Load and Parse do: a zero duration is
// an error. On failure the error is Errors; for a config read from a file
// each problem names the file and the line.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return errs
	}
	return nil
}

// Loopback reports whether listen.address is a loopback address:
// 127.0.0.0/8, ::1 or localhost.
func (c *Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Listen.Address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// NeedsTLS reports whether the listener lacks the TLS it must have: its
// address is not loopback, it has no certificate and insecure_http is not
// set. Validate refuses such a config.
func (c *Config) NeedsTLS() bool {
	t := c.Listen.TLS
	hasTLS := t != nil && t.CertFile != "" && t.KeyFile != ""
	return !c.Loopback() && !hasTLS && !c.Listen.InsecureHTTP
}

// line returns the line of path in the file, or of its nearest parent
// found there; 0 for a config built in Go.
func (c *Config) line(path string) int {
	if c.lines == nil {
		return 0
	}
	for {
		if l, ok := c.lines[path]; ok {
			return l
		}
		if path == "" {
			return 1
		}
		path = parent(path)
	}
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.File, Line: v.c.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() Errors {
	v := &validator{c: c}
	v.node()
	v.listen()
	v.peer()
	v.follow()
	v.trunk()
	v.registrar()
	v.edge()
	v.auth()
	v.services()
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	return v.errs
}

func (v *validator) node() {
	c := v.c
	switch c.Kind {
	case "":
		v.errorf("kind", "required")
	case KindXiVO, KindCC, KindMDS, KindEdge:
	default:
		v.errorf("kind", "must be one of xivo, cc, mds, edge, not %s", quote(string(c.Kind)))
	}
	v.nodeName("name", c.Name)
	switch c.Role {
	case "":
		if c.Kind == KindXiVO || c.Kind == KindCC {
			v.errorf("role", "required for kind %s (main or standby)", c.Kind)
		}
	case RoleMain, RoleStandby:
	default:
		v.errorf("role", "must be main or standby, not %s", quote(string(c.Role)))
	}
	switch {
	case c.Kind == KindCC && c.Mode != "follow":
		v.errorf("mode", `must be "follow" for kind cc (it follows its XiVO), not %s`, quote(c.Mode))
	case c.Kind != KindCC && c.Mode != "manual":
		v.errorf("mode", `must be "manual" (the only mode), not %s`, quote(c.Mode))
	}
	switch c.InitialStatus {
	case "", "active", "inactive":
	default:
		v.errorf("initial_status", "must be active or inactive, not %s", quote(c.InitialStatus))
	}
	if c.StateDir == "" {
		v.errorf("state_dir", "required")
	}
}

func (v *validator) nodeName(path, name string) {
	switch {
	case name == "":
		v.errorf(path, "required")
	case !nodeNameRE.MatchString(name):
		v.errorf(path, "invalid name %s: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit", quote(name))
	}
}

func (v *validator) listen() {
	l := v.c.Listen
	addrOK := false
	switch host, _, msg := splitHostPort(l.Address, 0); {
	case l.Address == "":
		v.errorf("listen.address", "required")
	case msg != "":
		v.errorf("listen.address", "%s", msg)
	case host != "localhost" && !isIP(host):
		v.errorf("listen.address", `host must be an IP address or "localhost", not %s (use 0.0.0.0 or [::] for all addresses)`, quote(host))
	default:
		addrOK = true
	}
	tlsOK := true
	if t := l.TLS; t != nil {
		if t.CertFile == "" && t.KeyFile != "" {
			v.errorf("listen.tls.cert_file", "required with key_file")
			tlsOK = false
		}
		if t.KeyFile == "" && t.CertFile != "" {
			v.errorf("listen.tls.key_file", "required with cert_file")
			tlsOK = false
		}
	}
	if addrOK && tlsOK && v.c.NeedsTLS() {
		v.errorf("listen.tls", "required on a non-loopback address (or set insecure_http: true)")
	}
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// splitHostPort checks a HOST:PORT address, with a port from minPort to
// 65535, and returns the host or a message.
func splitHostPort(addr string, minPort int) (host string, port int, msg string) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Sprintf("must be HOST:PORT, not %s", quote(addr))
	}
	port, err = strconv.Atoi(p)
	if err != nil || strings.TrimLeft(p, "0123456789") != "" || port < minPort || port > 65535 {
		return "", 0, fmt.Sprintf("port must be a number from %d to 65535, not %s", minPort, quote(p))
	}
	if host == "" {
		return "", 0, fmt.Sprintf("must be HOST:PORT with a host, not %s", quote(addr))
	}
	return host, port, ""
}

// httpURL checks an http or https URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == ""
}

func (v *validator) peer() {
	c := v.c
	p := c.Peer
	if p == nil {
		return
	}
	v.nodeName("peer.name", p.Name)
	if p.Name == c.Name && nodeNameRE.MatchString(p.Name) {
		v.errorf("peer.name", "must differ from name")
	}
	switch {
	case p.URL == "":
		v.errorf("peer.url", "required")
	case !httpURL(p.URL):
		v.errorf("peer.url", "must be an http or https URL, not %s", quote(p.URL))
	}
	v.secret("peer.token", p.Token)
	v.positive("peer.timeout", p.Timeout)
}

func (v *validator) follow() {
	c := v.c
	f := c.XiVO
	switch {
	case c.Kind == KindCC && f == nil:
		v.errorf("xivo", "required for kind cc (the XiVO it follows)")
		return
	case c.Kind != KindCC && f != nil:
		v.errorf("xivo", "only for kind cc")
		return
	case f == nil:
		return
	}
	if c.Peer != nil {
		v.errorf("peer", "not used by kind cc: a cc node follows its xivo, not the other cc")
	}
	v.nodeName("xivo.name", f.Name)
	switch {
	case f.URL == "":
		v.errorf("xivo.url", "required")
	case !httpURL(f.URL):
		v.errorf("xivo.url", "must be an http or https URL, not %s", quote(f.URL))
	}
	v.secret("xivo.token", f.Token)
	v.positive("xivo.poll_interval", f.PollInterval)
	v.positive("xivo.timeout", f.Timeout)
}

func (v *validator) trunk() {
	c := v.c
	t := c.Trunk
	if t == nil {
		return
	}
	if c.Kind != KindXiVO {
		v.errorf("trunk", "only for kind xivo")
		return
	}
	if t.LocalIP != "" && !isIP(t.LocalIP) {
		v.errorf("trunk.local_ip", "must be an IP address, not %s", quote(t.LocalIP))
	}
	if t.LocalIP == "" {
		if host, _, msg := splitHostPort(c.Listen.Address, 0); msg == "" && !usableIP(host) {
			v.errorf("trunk.local_ip", "required when listen.address is not one IP address (%s)", quote(c.Listen.Address))
		}
	}
	names := make(map[string]string)
	for i, m := range t.MDS {
		p := index("trunk.mds", i)
		v.nodeName(p+".name", m.Name)
		if m.Name != "" {
			v.unique(p+".name", m.Name, "MDS name", true, names)
		}
		if msg := sipURI(m.Registrar); msg != "" {
			v.errorf(p+".registrar", "%s", msg)
		}
		if m.Username == "" {
			v.errorf(p+".username", "required")
		}
		v.secret(p+".password", m.Password)
		v.positive(p+".expiry", m.Expiry)
	}
}

// usableIP tells whether host is one address a SIP Contact can name.
func usableIP(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && !a.IsUnspecified()
}

// sipURI checks a registrar URI: sip:host:port, with an optional
// transport of udp or tcp; it returns what is wrong, or "".
func sipURI(s string) string {
	if s == "" {
		return "required"
	}
	rest, ok := strings.CutPrefix(s, "sip:")
	if !ok {
		return fmt.Sprintf("must be a sip: URI (sip:10.0.2.1:5060;transport=udp), not %s", quote(s))
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if _, _, msg := splitHostPort(hostport, 1); msg != "" {
		return fmt.Sprintf("%s: %s", quote(s), msg)
	}
	for _, p := range strings.Split(params, ";") {
		switch strings.ToLower(p) {
		case "", "transport=udp", "transport=tcp", "lr":
		default:
			return fmt.Sprintf("%s: unsupported parameter %s (transport=udp or transport=tcp)", quote(s), quote(p))
		}
	}
	return ""
}

func (v *validator) registrar() {
	c := v.c
	r := c.Registrar
	switch {
	case c.Kind == KindMDS && r == nil:
		v.errorf("registrar", "required for kind mds")
		return
	case c.Kind != KindMDS && r != nil:
		v.errorf("registrar", "only for kind mds")
		return
	case r == nil:
		return
	}
	if r.UDP == "" && r.TCP == "" {
		v.errorf("registrar", "udp or tcp (or both) required")
	}
	for _, l := range []struct{ path, addr string }{{"registrar.udp", r.UDP}, {"registrar.tcp", r.TCP}} {
		if l.addr == "" {
			continue
		}
		if _, _, msg := splitHostPort(l.addr, 1); msg != "" {
			v.errorf(l.path, "%s", msg)
		}
	}
	if len(r.Users) == 0 {
		v.errorf("registrar.users", "at least one required (the trunk's credentials)")
	}
	names := make(map[string]string)
	for i, u := range r.Users {
		p := index("registrar.users", i)
		v.unique(p+".username", u.Username, "username", true, names)
		v.secret(p+".password", u.Password)
	}
	v.positive("registrar.min_expires", r.MinExpires)
	v.positive("registrar.max_expires", r.MaxExpires)
	v.positive("registrar.default_expires", r.DefaultExpires)
	if r.MinExpires > r.MaxExpires {
		v.errorf("registrar.min_expires", "must not exceed max_expires (%s)", r.MaxExpires)
	}
	if r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires {
		v.errorf("registrar.default_expires", "must be from min_expires to max_expires")
	}
}

func (v *validator) edge() {
	c := v.c
	if c.Kind != KindEdge {
		for _, k := range []struct {
			path string
			set  bool
		}{{"edge", c.Edge != nil}, {"nodes", len(c.Nodes) > 0}, {"routes", len(c.Routes) > 0}, {"sip", len(c.SIP) > 0}} {
			if k.set {
				v.errorf(k.path, "only for kind edge")
			}
		}
		return
	}
	e := c.Edge
	if e == nil {
		v.errorf("edge", "required for kind edge (its entry point)")
		return
	}
	if len(c.Routes) > 0 {
		if e.HTTP == "" {
			v.errorf("edge.http", "required when there are routes")
		} else if _, _, msg := splitHostPort(e.HTTP, 0); msg != "" {
			v.errorf("edge.http", "%s", msg)
		}
	}
	if t := e.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		v.errorf("edge.tls", "cert_file and key_file go together")
	}
	if len(c.Routes)+len(c.SIP) == 0 {
		v.errorf("routes", "at least one route (routes or sip) required")
	}
	nodes := make(map[string]string)
	for i, n := range c.Nodes {
		p := index("nodes", i)
		v.nodeName(p+".name", n.Name)
		if n.Name != "" {
			v.unique(p+".name", n.Name, "node", true, nodes)
		}
		if !httpURL(n.URL) {
			v.errorf(p+".url", "must be an http or https URL, not %s", quote(n.URL))
		}
		v.secret(p+".token", n.Token)
	}
	backend := func(p string, b Backend) {
		switch {
		case b.Node == "":
			v.errorf(p+".node", "required (the xivo or cc node whose status decides)")
		case nodes[b.Node] == "":
			v.errorf(p+".node", "unknown node %s: list it under nodes", quote(b.Node))
		}
		if _, _, msg := splitHostPort(b.Address, 1); msg != "" {
			v.errorf(p+".address", "%s", msg)
		}
		if h := b.Health; h != nil {
			v.positive(p+".health.interval", h.Interval)
			v.positive(p+".health.timeout", h.Timeout)
			if h.Rise < 1 {
				v.errorf(p+".health.rise", "must be at least 1")
			}
			if h.Fall < 1 {
				v.errorf(p+".health.fall", "must be at least 1")
			}
			if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
				v.errorf(p+".health.path", "must start with /")
			}
		}
	}
	names := make(map[string]string)
	for i, r := range c.Routes {
		p := index("routes", i)
		v.unique(p+".name", r.Name, "route name", true, names)
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			v.errorf(p+".path_prefix", "must start with /")
		}
		backend(p+".main", r.Main)
		backend(p+".standby", r.Standby)
	}
	for i, r := range c.SIP {
		p := index("sip", i)
		v.unique(p+".name", r.Name, "route name", true, names)
		if _, _, msg := splitHostPort(r.Listen, 0); msg != "" {
			v.errorf(p+".listen", "%s", msg)
		}
		if !r.UDP && !r.TCP {
			v.errorf(p, "udp or tcp (or both) required")
		}
		backend(p+".main", r.Main)
		backend(p+".standby", r.Standby)
	}
}

func (v *validator) secret(path string, s Secret) {
	switch {
	case s.IsZero():
		v.errorf(path, "required (env or file)")
	case s.Env != "" && s.File != "":
		v.errorf(path, "exactly one of env or file required, not both")
	case s.Env != "" && !envNameRE.MatchString(s.Env):
		v.errorf(path+".env", "invalid environment variable name %s", quote(s.Env))
	}
}

func (v *validator) auth() {
	names := make(map[string]string)
	for i, u := range v.c.Auth.Users {
		p := index("auth.users", i)
		v.unique(p+".name", u.Name, "user name", true, names)
		switch m := bcryptRE.FindStringSubmatch(u.PasswordHash); {
		case u.PasswordHash == "":
			v.errorf(p+".password_hash", "required")
		case m == nil:
			v.errorf(p+".password_hash", "not a bcrypt hash ($2a$, $2b$ or $2y$): make one with resilience hash-password")
		default:
			if cost, _ := strconv.Atoi(m[1]); cost < 4 || cost > 31 {
				v.errorf(p+".password_hash", "bcrypt cost %s out of range (04 to 31)", m[1])
			}
		}
		switch u.Role {
		case "":
			v.errorf(p+".role", "required (admin or viewer)")
		case "admin", "viewer":
		default:
			v.errorf(p+".role", "must be admin or viewer, not %s", quote(u.Role))
		}
	}
	names = make(map[string]string)
	hashes := make(map[string]string)
	for i, t := range v.c.Auth.Tokens {
		p := index("auth.tokens", i)
		v.unique(p+".name", t.Name, "token name", true, names)
		switch {
		case t.Hash == "":
			v.errorf(p+".hash", "required")
		case !tokenHashRE.MatchString(t.Hash):
			v.errorf(p+".hash", `must be "sha256:" and 64 lowercase hex digits: make one with resilience hash-token`)
		default:
			v.unique(p+".hash", t.Hash, "token hash", false, hashes)
		}
		switch t.Scope {
		case "":
			v.errorf(p+".scope", "required (read or operate)")
		case "read", "operate":
		default:
			v.errorf(p+".scope", "must be read or operate, not %s", quote(t.Scope))
		}
	}
}

// unique checks that the value at path is set and not in seen, which maps
// the values met so far to their path, and adds it. what names the value in
// the message; show says whether to print it.
func (v *validator) unique(path, value, what string, show bool, seen map[string]string) {
	if value == "" {
		v.errorf(path, "required")
		return
	}
	first, dup := seen[value]
	if !dup {
		seen[value] = path
		return
	}
	where := "first at " + first
	if l := v.c.line(first); l > 0 {
		where = "first at line " + strconv.Itoa(l)
	}
	if show {
		v.errorf(path, "duplicate %s %s (%s)", what, quote(value), where)
	} else {
		v.errorf(path, "duplicate %s (%s)", what, where)
	}
}

func (v *validator) services() {
	c := v.c
	if len(c.Services) == 0 && c.Kind == KindXiVO {
		v.errorf("services", "at least one required for kind xivo")
	}
	names := make(map[string]string)
	for i := range c.Services {
		s := &c.Services[i]
		p := index("services", i)
		if s.Name != "" && !serviceNameRE.MatchString(s.Name) {
			v.errorf(p+".name", "invalid service name %s: use 1 to 64 letters, digits, '_', '.' and '-', starting with a letter or digit", quote(s.Name))
		} else {
			v.unique(p+".name", s.Name, "service name", true, names)
		}
		backends := 0
		for _, set := range []bool{s.Exec != nil, s.Command != nil, s.Docker != nil} {
			if set {
				backends++
			}
		}
		switch {
		case backends == 0:
			v.errorf(p, "exactly one backend (exec, command or docker) required")
		case backends > 1:
			v.errorf(p, "exactly one backend (exec, command or docker) required, not several")
		case s.Exec != nil:
			v.exec(p+".exec", s.Exec)
		case s.Docker != nil:
			if s.Docker.Container == "" {
				v.errorf(p+".docker.container", "required (the container's name)")
			}
			v.positive(p+".docker.stop_timeout", s.Docker.StopTimeout)
		default:
			if s.Command.Start == "" {
				v.errorf(p+".command.start", "required")
			}
			if s.Command.Stop == "" {
				v.errorf(p+".command.stop", "required")
			}
		}
		if r := s.Ready; r != nil {
			v.ready(p+".ready", r)
		}
		v.positive(p+".start_timeout", s.StartTimeout)
		v.positive(p+".stop_timeout", s.StopTimeout)
	}
}

func (v *validator) exec(p string, e *Exec) {
	if len(e.Command) == 0 {
		v.errorf(p+".command", "required (the program and its arguments)")
	} else if e.Command[0] == "" {
		v.errorf(index(p+".command", 0), "must not be empty")
	}
	for k := range e.Env {
		if !envNameRE.MatchString(k) {
			v.errorf(join(p+".env", k), "invalid environment variable name %s", quote(k))
		}
	}
	v.positive(p+".stop_grace", e.StopGrace)
	v.positive(p+".restart_backoff", e.RestartBackoff)
	v.positive(p+".restart_backoff_max", e.RestartBackoffMax)
	if e.RestartBackoff > e.RestartBackoffMax && e.RestartBackoffMax > 0 {
		v.errorf(p+".restart_backoff", "must not exceed restart_backoff_max (%s)", e.RestartBackoffMax)
	}
}

func (v *validator) ready(p string, r *Ready) {
	n := 0
	for _, s := range []string{r.TCP, r.HTTP, r.Command} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		msg := "exactly one check (tcp, http or command) required"
		if n > 1 {
			msg += ", not several"
		}
		v.errorf(p, "%s", msg)
	}
	if r.TCP != "" {
		if _, _, msg := splitHostPort(r.TCP, 1); msg != "" {
			v.errorf(p+".tcp", "%s", msg)
		}
	}
	if r.HTTP != "" && !httpURL(r.HTTP) {
		v.errorf(p+".http", "must be an http or https URL, not %s", quote(r.HTTP))
	}
	v.positive(p+".timeout", r.Timeout)
	v.positive(p+".interval", r.Interval)
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.errorf(path, "must be positive")
	}
}

func (v *validator) oneOf(path, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.errorf(path, "must be one of %s, not %s", strings.Join(allowed, ", "), quote(s))
}
