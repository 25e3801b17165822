package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	adminHash  = "$2a$10$Za/lsueuzlOUlUJTJMFQPuVd3mKcfRgwCV.sRI.B3uHsXEH6trg2q"
	viewerHash = "$2a$10$MustBESe5dklPQBgRdHSgOsy.jB8ldstcErKZJqgtBSTPCwFC8x.e"
	ccHash     = "sha256:9f45f1c04abc5de2cc6160a494d352524b40bbe3b3fd6f8f5dc0fd423e717c44"
	edgeHash   = "sha256:95bcb846a7202cab322c3ed48397e32059113f872a90b8d7ba169b63184092db"
	opsHash    = "sha256:d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def"
)

func sec(d float64) Duration { return Duration(d * float64(time.Second)) }

func TestLoad_good(t *testing.T) {
	dir, err := filepath.Abs("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want *Config
	}{
		{
			name: "xivo-main.yaml",
			want: &Config{
				File:          "testdata/good/xivo-main.yaml",
				Kind:          KindXiVO,
				Name:          "xivo-main",
				Role:          RoleMain,
				Mode:          "manual",
				InitialStatus: "active",
				StateDir:      filepath.Join(dir, "state"),
				Listen: Listen{
					Address: "192.0.2.10:8443",
					TLS: &TLS{
						CertFile: filepath.Join(dir, "tls/xivo-main.crt"),
						KeyFile:  filepath.Join(dir, "tls/xivo-main.key"),
					},
				},
				Peer: &Peer{
					Name:    "xivo-standby",
					URL:     "https://192.0.2.11:8443",
					Token:   Secret{Env: "RESILIENCE_PEER_TOKEN"},
					CAFile:  filepath.Join(dir, "tls/ca.crt"),
					Timeout: sec(1.5),
				},
				Auth: Auth{
					Users: []User{
						{Name: "admin", PasswordHash: adminHash, Role: "admin"},
						{Name: "supervisor", PasswordHash: viewerHash, Role: "viewer"},
					},
					Tokens: []Token{
						{Name: "xivo-cc", Hash: ccHash, Scope: "read"},
						{Name: "edge", Hash: edgeHash, Scope: "read"},
						{Name: "ops", Hash: opsHash, Scope: "operate"},
					},
				},
				Services: []Service{
					{
						Name: "postgresql",
						Command: &Command{
							Start:  "systemctl start postgresql",
							Stop:   "systemctl stop postgresql",
							Status: "systemctl is-active --quiet postgresql",
						},
						Ready:        &Ready{TCP: "127.0.0.1:5432", Timeout: sec(2), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
					{
						Name:         "asterisk",
						Command:      &Command{Start: "xivo-service start asterisk", Stop: "xivo-service stop asterisk"},
						Ready:        &Ready{Command: `asterisk -rx "core show version"`, Timeout: sec(5), Interval: sec(1)},
						StartTimeout: sec(120),
						StopTimeout:  sec(60),
					},
					{
						Name: "xivo-agid",
						Exec: &Exec{
							Command:           []string{"/usr/bin/xivo-agid", "-f"},
							Env:               map[string]string{"LANG": "C.UTF-8"},
							Dir:               "/var/lib/xivo-agid",
							StopGrace:         sec(5),
							RestartBackoff:    sec(0.5),
							RestartBackoffMax: sec(30),
						},
						Ready:        &Ready{TCP: "127.0.0.1:4573", Timeout: sec(2), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
				},
				Log: Log{Level: "info", Format: "json"},
			},
		},
		{
			name: "xivo-standby.yaml",
			want: &Config{
				File:          "testdata/good/xivo-standby.yaml",
				Kind:          KindXiVO,
				Name:          "xivo-standby",
				Role:          RoleStandby,
				Mode:          "manual",
				InitialStatus: "inactive",
				StateDir:      "/var/lib/resilience/xivo-standby",
				Listen:        Listen{Address: "127.0.0.3:8441"},
				Peer: &Peer{
					Name:    "xivo-main",
					URL:     "http://127.0.0.2:8441",
					Token:   Secret{File: filepath.Join(dir, "secrets/peer-token")},
					Timeout: sec(1),
				},
				Auth: Auth{
					Users:  []User{{Name: "admin", PasswordHash: adminHash, Role: "admin"}},
					Tokens: []Token{{Name: "lab", Hash: opsHash, Scope: "operate"}},
				},
				Services: []Service{
					{
						Name: "asterisk",
						Exec: &Exec{
							Command:           []string{"/usr/local/bin/resilience", "sample-service", "--name", "asterisk", "--listen", "127.0.0.3:5060"},
							Env:               map[string]string{"SAMPLE_BANNER": "asterisk on xivo-standby"},
							Dir:               filepath.Join(dir, "run"),
							LogFile:           filepath.Join(dir, "logs/asterisk.log"),
							StopGrace:         sec(10),
							RestartBackoff:    sec(1),
							RestartBackoffMax: sec(60),
						},
						Ready:        &Ready{HTTP: "http://127.0.0.3:5060/ready", Timeout: sec(2), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
					{
						Name:         "xivo-ctid",
						Command:      &Command{Start: "/bin/true", Stop: "/bin/true"},
						StartTimeout: sec(10),
						StopTimeout:  sec(30),
					},
				},
				Log: Log{Level: "info", Format: "text"},
			},
		},
		{
			name: "xivo-anchors.yaml",
			want: &Config{
				File:          "testdata/good/xivo-anchors.yaml",
				Kind:          KindXiVO,
				Name:          "xivo-anchors",
				Role:          RoleMain,
				Mode:          "manual",
				InitialStatus: "inactive",
				StateDir:      "/var/lib/resilience",
				Listen:        Listen{Address: "[::1]:8441"},
				Peer:          &Peer{Name: "xivo-other", URL: "http://[::1]:8442", Token: Secret{Env: "PEER_TOKEN"}, Timeout: sec(1)},
				Services: []Service{
					{
						Name:         "one",
						Command:      &Command{Start: "true", Stop: "true"},
						Ready:        &Ready{TCP: "127.0.0.1:5038", Timeout: sec(3), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
					{
						Name:         "two",
						Command:      &Command{Start: "true", Stop: "true"},
						Ready:        &Ready{TCP: "127.0.0.1:5038", Timeout: sec(1), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
					{
						Name:         "three",
						Command:      &Command{Start: "true", Stop: "true"},
						Ready:        &Ready{TCP: "127.0.0.1:5038", Timeout: sec(3), Interval: sec(0.25)},
						StartTimeout: sec(30),
						StopTimeout:  sec(30),
					},
				},
				Log: Log{Level: "info", Format: "text"},
			},
		},
		{
			name: "cc-main.yaml",
			want: &Config{
				File:          "testdata/good/cc-main.yaml",
				Kind:          KindCC,
				Name:          "cc-main",
				Role:          RoleMain,
				Mode:          "follow",
				InitialStatus: "inactive",
				StateDir:      "/var/lib/resilience",
				Listen:        Listen{Address: "localhost:8451"},
				XiVO: &Follow{Name: "xivo-main", URL: "https://10.0.0.1:8441",
					Token:  Secret{File: "/etc/resilience/secrets/xivo.token"},
					CAFile: "/etc/resilience/tls/ca.crt", PollInterval: sec(1), Timeout: sec(1)},
				Services: []Service{},
				Log:      Log{Level: "info", Format: "text"},
			},
		},
		{
			name: "mds.yaml",
			want: &Config{
				File:     "testdata/good/mds.yaml",
				Kind:     KindMDS,
				Name:     "mds-1",
				Mode:     "manual",
				StateDir: "/var/lib/resilience",
				Listen:   Listen{Address: "0.0.0.0:8461", InsecureHTTP: true},
				Registrar: &Registrar{UDP: "10.0.2.1:5060", TCP: "10.0.2.1:5060", Realm: "mds-1",
					Users:      []TrunkUser{{Username: "xivo-trunk", Password: Secret{Env: "MDS_TRUNK_PASSWORD"}}},
					MinExpires: sec(60), MaxExpires: sec(3600), DefaultExpires: sec(300)},
				Log: Log{Level: "debug", Format: "text"},
			},
		},
	}
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("testdata/good has %d files, the table %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata/good", tt.name))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
			got.lines = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load:\n got %s\nwant %s", dump(t, got), dump(t, tt.want))
			}
		})
	}
}

func dump(t *testing.T, c *Config) string {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoad_bad(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"unknown-key.yaml", []string{
			"testdata/bad/unknown-key.yaml:4: listen.address: required",
			"testdata/bad/unknown-key.yaml:5: listen.adress: unknown key",
			"testdata/bad/unknown-key.yaml:12: services[0].command.statsu: unknown key",
		}},
		{"bad-duration.yaml", []string{
			`testdata/bad/bad-duration.yaml:10: peer.timeout: invalid duration "5": missing unit (e.g. "5s")`,
			`testdata/bad/bad-duration.yaml:14: services[0].start_timeout: invalid duration "-1s": must not be negative`,
			`testdata/bad/bad-duration.yaml:17: services[1].stop_timeout: must be positive`,
			`testdata/bad/bad-duration.yaml:22: services[2].ready.timeout: invalid duration "3x"`,
			`testdata/bad/bad-duration.yaml:23: services[2].ready.interval: must be a duration, e.g. "1.5s"`,
		}},
		{"duplicate-service.yaml", []string{
			`testdata/bad/duplicate-service.yaml:15: services[2].name: duplicate service name "asterisk" (first at line 11)`,
			`testdata/bad/duplicate-service.yaml:17: services[3].name: required`,
			`testdata/bad/duplicate-service.yaml:18: services[4].name: invalid service name "-bad": use 1 to 64 letters, digits, '_', '.' and '-', starting with a letter or digit`,
		}},
		{"missing-required.yaml", []string{
			"testdata/bad/missing-required.yaml:1: name: required",
			"testdata/bad/missing-required.yaml:1: role: required for kind xivo (main or standby)",
			"testdata/bad/missing-required.yaml:2: listen.address: required",
			"testdata/bad/missing-required.yaml:3: listen.tls.key_file: required with cert_file",
			"testdata/bad/missing-required.yaml:5: peer.name: required",
			"testdata/bad/missing-required.yaml:7: peer.token: required (env or file)",
			"testdata/bad/missing-required.yaml:10: services[0].command.start: required",
			"testdata/bad/missing-required.yaml:10: services[0].command.stop: required",
			"testdata/bad/missing-required.yaml:13: services[1].exec.command: required (the program and its arguments)",
			"testdata/bad/missing-required.yaml:17: auth.users[0].password_hash: required",
			"testdata/bad/missing-required.yaml:17: auth.users[0].role: required (admin or viewer)",
			"testdata/bad/missing-required.yaml:19: auth.tokens[0].name: required",
			"testdata/bad/missing-required.yaml:19: auth.tokens[0].hash: required",
			"testdata/bad/missing-required.yaml:19: auth.tokens[0].scope: required (read or operate)",
		}},
		{"no-services.yaml", []string{
			"testdata/bad/no-services.yaml:1: services: at least one required for kind xivo",
		}},
		{"wrong-type.yaml", []string{
			"testdata/bad/wrong-type.yaml:2: name: must be a string",
			"testdata/bad/wrong-type.yaml:6: listen.insecure_http: must be a boolean (true or false)",
			"testdata/bad/wrong-type.yaml:10: peer.token: must be a mapping with env or file, e.g. {env: PEER_TOKEN}",
			"testdata/bad/wrong-type.yaml:11: services: must be a list",
			"testdata/bad/wrong-type.yaml:15: auth.users: must be a list",
			"testdata/bad/wrong-type.yaml:16: log: must be a mapping",
		}},
		{"null-item.yaml", []string{
			"testdata/bad/null-item.yaml:11: services[0]: must be a mapping",
		}},
		{"not-a-mapping.yaml", []string{
			"testdata/bad/not-a-mapping.yaml:1: the top level must be a mapping",
		}},
		{"duplicate-key.yaml", []string{
			"testdata/bad/duplicate-key.yaml:6: listen.address: duplicate key (first at line 5)",
			"testdata/bad/duplicate-key.yaml:14: name: duplicate key (first at line 2)",
		}},
		{"two-backends.yaml", []string{
			"testdata/bad/two-backends.yaml:13: services[1]: exactly one backend (exec, command or docker) required, not several",
		}},
		{"no-backend.yaml", []string{
			"testdata/bad/no-backend.yaml:13: services[1]: exactly one backend (exec, command or docker) required",
		}},
		{"bad-token-hash.yaml", []string{
			`testdata/bad/bad-token-hash.yaml:16: auth.tokens[0].hash: must be "sha256:" and 64 lowercase hex digits: make one with resilience hash-token`,
			`testdata/bad/bad-token-hash.yaml:19: auth.tokens[1].hash: must be "sha256:" and 64 lowercase hex digits: make one with resilience hash-token`,
			`testdata/bad/bad-token-hash.yaml:23: auth.tokens[2].scope: must be read or operate, not "write"`,
			`testdata/bad/bad-token-hash.yaml:24: auth.tokens[3].name: duplicate token name "ops" (first at line 21)`,
			`testdata/bad/bad-token-hash.yaml:25: auth.tokens[3].hash: duplicate token hash (first at line 22)`,
		}},
		{"bad-bcrypt.yaml", []string{
			"testdata/bad/bad-bcrypt.yaml:16: auth.users[0].password_hash: not a bcrypt hash ($2a$, $2b$ or $2y$): make one with resilience hash-password",
			"testdata/bad/bad-bcrypt.yaml:19: auth.users[1].password_hash: bcrypt cost 03 out of range (04 to 31)",
			"testdata/bad/bad-bcrypt.yaml:22: auth.users[2].password_hash: not a bcrypt hash ($2a$, $2b$ or $2y$): make one with resilience hash-password",
			`testdata/bad/bad-bcrypt.yaml:23: auth.users[2].role: must be admin or viewer, not "root"`,
			`testdata/bad/bad-bcrypt.yaml:24: auth.users[3].name: duplicate user name "admin" (first at line 15)`,
		}},
		{"no-tls.yaml", []string{
			"testdata/bad/no-tls.yaml:4: listen.tls: required on a non-loopback address (or set insecure_http: true)",
		}},
		{"bad-values.yaml", []string{
			`testdata/bad/bad-values.yaml:1: kind: must be one of xivo, cc, mds, edge, not "xivo-ng"`,
			`testdata/bad/bad-values.yaml:2: name: invalid name "XiVO_Main": use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit`,
			`testdata/bad/bad-values.yaml:3: role: must be main or standby, not "primary"`,
			`testdata/bad/bad-values.yaml:4: mode: must be "manual" (the only mode), not "automatic"`,
			`testdata/bad/bad-values.yaml:5: initial_status: must be active or inactive, not "running"`,
			`testdata/bad/bad-values.yaml:6: state_dir: required`,
			`testdata/bad/bad-values.yaml:8: listen.address: host must be an IP address or "localhost", not "xivo.example.com" (use 0.0.0.0 or [::] for all addresses)`,
			`testdata/bad/bad-values.yaml:10: peer.name: invalid name "XiVO_Main": use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit`,
			`testdata/bad/bad-values.yaml:11: peer.url: must be an http or https URL, not "ftp://192.0.2.11"`,
			`testdata/bad/bad-values.yaml:12: peer.token: exactly one of env or file required, not both`,
			`testdata/bad/bad-values.yaml:13: peer.timeout: must be positive`,
			`testdata/bad/bad-values.yaml:17: services[0].exec.command[0]: must not be empty`,
			`testdata/bad/bad-values.yaml:18: services[0].exec.env.BAD-NAME: invalid environment variable name "BAD-NAME"`,
			`testdata/bad/bad-values.yaml:19: services[0].exec.restart_backoff: must not exceed restart_backoff_max (30s)`,
			`testdata/bad/bad-values.yaml:21: services[0].ready: exactly one check (tcp, http or command) required, not several`,
			`testdata/bad/bad-values.yaml:22: services[0].ready.tcp: must be HOST:PORT, not "localhost"`,
			`testdata/bad/bad-values.yaml:23: services[0].ready.http: must be an http or https URL, not "localhost:8080/ready"`,
			`testdata/bad/bad-values.yaml:25: log.level: must be one of debug, info, warn, error, not "verbose"`,
			`testdata/bad/bad-values.yaml:26: log.format: must be one of text, json, not "xml"`,
		}},
		{"tab-indent.yaml", []string{
			"testdata/bad/tab-indent.yaml:4: found character that cannot start any token (indent with spaces, not tabs)",
		}},
		{"bad-indent.yaml", []string{
			"testdata/bad/bad-indent.yaml:6: did not find expected '-' indicator",
		}},
		{"two-documents.yaml", []string{
			"testdata/bad/two-documents.yaml:3: a second YAML document: the config must be one document",
		}},
		{"empty.yaml", []string{
			"testdata/bad/empty.yaml: file is empty",
		}},
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("testdata/bad has %d files, the table %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata/bad", tt.file))
			if err == nil {
				t.Fatalf("Load succeeded: %s", dump(t, c))
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Load error:\n got:\n%s\nwant:\n%s", got, want)
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != len(tt.want) {
				t.Errorf("Load error is %T with %d problems, want Errors with %d", err, len(errs), len(tt.want))
			}
		})
	}
}

// base is a valid config, to which the Parse tests append or prepend.
const base = `kind: xivo
name: xivo-main
role: main
listen:
  address: 127.0.0.1:8441
peer:
  name: xivo-standby
  url: http://127.0.0.1:8442
  token: {env: PEER_TOKEN}
`

const oneService = `services:
  - name: asterisk
    command: {start: "true", stop: "true"}
`

// edgeSection is what an edge node needs besides the common keys.
const edgeSection = "edge: {http: \"127.0.0.30:8080\"}\nnodes:\n  - {name: xivo-main, url: \"http://127.0.0.2:8441\", token: {env: T}}\n  - {name: xivo-standby, url: \"http://127.0.0.3:8441\", token: {env: T}}\n" +
	"routes:\n  - name: web\n    main: {node: xivo-main, address: \"127.0.0.2:80\", health: {path: /}}\n    standby: {node: xivo-standby, address: \"127.0.0.3:80\"}\n"

// trunk is a trunk section of a xivo node.
const trunk = "trunk:\n  mds:\n    - {name: mds-1, registrar: \"sip:127.0.0.11:5060;transport=tcp\", username: xivo, password: {env: P}}\n"

// ccBase is a cc node without its xivo section.
const ccBase = "kind: cc\nname: cc-main\nrole: main\nlisten:\n  address: 127.0.0.1:8451\n"

// ccXiVO is the xivo section a cc config needs.
const ccXiVO = "xivo:\n  name: xivo-main\n  url: http://127.0.0.2:8441\n  token: {env: CC_TOKEN}\n"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string // "" for success
	}{
		{"valid", base + oneService, ""},
		{"flow style", `{kind: xivo, name: a, role: main, listen: {address: "127.0.0.1:1"}, peer: {name: b, url: "http://x", token: {file: t}}, services: [{name: s, command: {start: a, stop: b}}]}`, ""},
		{"port 0", strings.Replace(base, ":8441", ":0", 1) + oneService, ""},
		{"ipv6 loopback", strings.Replace(base, "127.0.0.1:8441", `"[::1]:8441"`, 1) + oneService, ""},
		{"insecure http", strings.Replace(base, "127.0.0.1:8441", "0.0.0.0:8441\n  insecure_http: true", 1) + oneService, ""},
		{"tls on any address", strings.Replace(base, "127.0.0.1:8441", "\"[::]:8443\"\n  tls: {cert_file: c, key_file: k}", 1) + oneService, ""},
		{"empty tls", strings.Replace(base, "127.0.0.1:8441", "0.0.0.0:8441\n  tls: {}", 1) + oneService,
			"f.yaml:6: listen.tls: required on a non-loopback address (or set insecure_http: true)"},
		{"tls cert only", strings.Replace(base, "127.0.0.1:8441", "0.0.0.0:8441\n  tls: {cert_file: c}", 1) + oneService,
			"f.yaml:6: listen.tls.key_file: required with cert_file"},
		{"listen without port", strings.Replace(base, "127.0.0.1:8441", "127.0.0.1", 1) + oneService,
			`f.yaml:5: listen.address: must be HOST:PORT, not "127.0.0.1"`},
		{"listen bad port", strings.Replace(base, "127.0.0.1:8441", "127.0.0.1:http", 1) + oneService,
			`f.yaml:5: listen.address: port must be a number from 0 to 65535, not "http"`},
		{"listen no host", strings.Replace(base, "127.0.0.1:8441", `":8441"`, 1) + oneService,
			`f.yaml:5: listen.address: must be HOST:PORT with a host, not ":8441"`},
		{"ready tcp port 0", base + oneService + "    ready: {tcp: \"127.0.0.1:0\"}\n",
			`f.yaml:13: services[0].ready.tcp: port must be a number from 1 to 65535, not "0"`},
		{"no ready check", base + oneService + "    ready: {timeout: 1s}\n",
			"f.yaml:13: services[0].ready: exactly one check (tcp, http or command) required"},
		{"peer same name", strings.Replace(base, "name: xivo-standby", "name: xivo-main", 1) + oneService,
			"f.yaml:7: peer.name: must differ from name"},
		{"peer token env name", strings.Replace(base, "PEER_TOKEN", "PEER-TOKEN", 1) + oneService,
			`f.yaml:9: peer.token.env: invalid environment variable name "PEER-TOKEN"`},
		{"cc without services", ccBase + ccXiVO, ""},
		{"cc without xivo", ccBase,
			"f.yaml:1: xivo: required for kind cc (the XiVO it follows)"},
		{"trunk on a xivo", base + oneService + trunk, ""},
		{"trunk with bad values", base + oneService + "trunk:\n  local_ip: nowhere\n  mds:\n    - name: mds-1\n      registrar: \"sips:x\"\n      password: {env: P}\n    - {name: mds-1, registrar: \"sip:10.0.2.2:5060;transport=sctp\", username: u, password: {env: P}}\n",
			"f.yaml:14: trunk.local_ip: must be an IP address, not \"nowhere\"\n" +
				"f.yaml:16: trunk.mds[0].username: required\n" +
				"f.yaml:17: trunk.mds[0].registrar: must be a sip: URI (sip:10.0.2.1:5060;transport=udp), not \"sips:x\"\n" +
				"f.yaml:19: trunk.mds[1].name: duplicate MDS name \"mds-1\" (first at line 16)\n" +
				"f.yaml:19: trunk.mds[1].registrar: \"sip:10.0.2.2:5060;transport=sctp\": unsupported parameter \"transport=sctp\" (transport=udp or transport=tcp)"},
		{"mds without registrar", "kind: mds\nname: mds-1\nlisten: {address: \"127.0.0.11:8461\"}\n",
			"f.yaml:1: registrar: required for kind mds"},
		{"cc with a peer", strings.Replace(base, "kind: xivo", "kind: cc", 1) + ccXiVO,
			"f.yaml:6: peer: not used by kind cc: a cc node follows its xivo, not the other cc"},
		{"cc in manual mode", ccBase + ccXiVO + "mode: manual\n",
			`f.yaml:10: mode: must be "follow" for kind cc (it follows its XiVO), not "manual"`},
		{"edge without role", "kind: edge\nname: edge\nlisten: {address: \"localhost:80\"}\n" + edgeSection, ""},
		{"edge with bad routes", "kind: edge\nname: edge\nlisten: {address: \"localhost:80\"}\nedge: {}\nroutes:\n  - name: web\n    main: {node: xivo-main, address: \"x\"}\n    standby: {node: nowhere, address: \"127.0.0.3:80\", health: {path: \"x\", rise: 0}}\n",
			"f.yaml:4: edge.http: required when there are routes\n" +
				"f.yaml:7: routes[0].main.node: unknown node \"xivo-main\": list it under nodes\n" +
				"f.yaml:7: routes[0].main.address: must be HOST:PORT, not \"x\"\n" +
				"f.yaml:8: routes[0].standby.node: unknown node \"nowhere\": list it under nodes\n" +
				"f.yaml:8: routes[0].standby.health.rise: must be at least 1\n" +
				"f.yaml:8: routes[0].standby.health.path: must start with /"},
		{"cc without role", "kind: cc\nname: cc\nlisten: {address: \"localhost:80\"}\n" + ccXiVO,
			"f.yaml:1: role: required for kind cc (main or standby)"},
		{"no kind", "name: x\nlisten: {address: \"localhost:80\"}\n", "f.yaml:1: kind: required"},
		{"empty mapping", "{}\n", "f.yaml:1: kind: required\nf.yaml:1: name: required\nf.yaml:1: listen.address: required"},
		{"null document", "~\n", "f.yaml: file is empty"},
		{"comments only", "# nothing\n", "f.yaml: file is empty"},
		{"document marker only", "---\n", "f.yaml: file is empty"},
		{"scalar document", "xivo\n", "f.yaml:1: the top level must be a mapping"},
		{"too large", base + oneService + "#" + strings.Repeat("x", MaxFileSize), "f.yaml: file is larger than 1 MiB"},
		{"null values keep defaults", base + oneService + "    start_timeout: ~\nmode:\nstate_dir: null\n", ""},
		{"quoted number duration", base + oneService + "    start_timeout: \"30\"\n",
			`f.yaml:13: services[0].start_timeout: invalid duration "30": missing unit (e.g. "30s")`},
		{"duplicate key in list item", base + oneService + "    name: again\n",
			"f.yaml:13: services[0].name: duplicate key (first at line 11)"},
		{"duplicate key in a field", base + "services:\n  - name: a\n    command: {start: a, start: b}\n",
			"f.yaml:12: services[0].command.start: duplicate key (first at line 12)"},
		{"non-string key", base + oneService + "? [a]\n: b\n", "f.yaml:13: keys must be strings"},
		{"null key", base + oneService + "~: b\n", "f.yaml:13: keys must be strings"},
		{"quoted odd key", base + oneService + "\"a b.c\": 1\n", `f.yaml:13: ["a b.c"]: unknown key`},
		{"odd env key", base + "services:\n  - name: a\n    exec:\n      command: [x]\n      env: {\"A.B\": x}\n",
			`f.yaml:14: services[0].exec.env["A.B"]: invalid environment variable name "A.B"`},
		{"env value list", base + "services:\n  - name: a\n    exec:\n      command: [x]\n      env: {A: [x]}\n",
			`f.yaml:14: services[0].exec.env.A: must be a string`},
		{"command not a list", base + "services:\n  - name: a\n    exec:\n      command: /usr/sbin/asterisk -f\n",
			"f.yaml:13: services[0].exec.command: must be a list"},
		{"command null item", base + "services:\n  - name: a\n    exec:\n      command: [x, ~]\n",
			"f.yaml:13: services[0].exec.command[1]: must be a string"},
		{"yes is not a boolean", strings.Replace(base, "127.0.0.1:8441", "0.0.0.0:8441\n  insecure_http: yes", 1) + oneService,
			"f.yaml:6: listen.insecure_http: must be a boolean (true or false)"},
		{"explicit tag", base + oneService + "    start_timeout: !!int 3\n",
			"f.yaml:13: services[0].start_timeout: explicit tag !!int is not supported"},
		{"explicit str tag", base + oneService + "    start_timeout: !!str 3s\n", ""},
		{"local tag", base + oneService + "log: !fancy {level: info}\n", "f.yaml:13: log: explicit tag !fancy is not supported"},
		{"alias of itself", base + "services:\n  - name: a\n    exec: {command: &c [*c]}\n",
			"f.yaml:12: services[0].exec.command[0]: must be a string"},
		{"merge cycle", base + oneService + "    ready: &r {<<: *r}\n",
			"f.yaml:13: services[0].ready: alias *r refers to itself"},
		{"merge of a scalar", base + oneService + "    ready: {<<: x}\n",
			"f.yaml:13: services[0].ready: merge (<<) needs a mapping or a list of mappings"},
		{"merge list", base + "x: &a {start: a}\n" + oneService, "f.yaml:10: x: unknown key"},
		{"merge list ok", base + "services:\n  - name: a\n    command: &c {start: a}\n  - name: b\n    command: {<<: [*c, {stop: b}]}\n",
			"f.yaml:12: services[0].command.stop: required"},
		{"merge does not override", base + "services:\n  - name: a\n    command: &c {start: a, stop: b}\n    ready: &r {tcp: \"h:1\"}\n  - name: b\n    command: {<<: *c, start: c}\n    ready: {<<: *r, http: \"http://h\"}\n",
			"f.yaml:16: services[1].ready: exactly one check (tcp, http or command) required, not several"},
		{"unknown key in merge", base + oneService + "    ready: {<<: {tcpp: \"h:1\"}}\n",
			"f.yaml:13: services[0].ready.tcpp: unknown key\nf.yaml:13: services[0].ready: exactly one check (tcp, http or command) required"},
		{"unknown anchor", base + oneService + "    ready: *nope\n", "f.yaml:13: unknown anchor 'nope' referenced"},
		{"bad utf-8", base + oneService + "# \xff\n", "f.yaml:13: invalid leading UTF-8 octet"},
		{"control character", base + oneService + "# \x01\n", "f.yaml:13: control characters are not allowed"},
		{"CR line breaks", "kind: mds\rname: [x]\rlisten: {address: \"::1:1\"}\r", "f.yaml:1: registrar: required for kind mds\nf.yaml:2: name: must be a string\nf.yaml:3: listen.address: must be HOST:PORT, not \"::1:1\""},
		{"CRLF line breaks", "kind: mds\r\nname: [x]\r\nlisten: {address: \"::1:1\"}\r\n", "f.yaml:1: registrar: required for kind mds\nf.yaml:2: name: must be a string\nf.yaml:3: listen.address: must be HOST:PORT, not \"::1:1\""},
		{"NEL line breaks", "kind: mds\u0085name: [x]\u0085listen: {address: \"::1:1\"}\u0085", "f.yaml:1: registrar: required for kind mds\nf.yaml:2: name: must be a string\nf.yaml:3: listen.address: must be HOST:PORT, not \"::1:1\""},
		{"CR before a bad character", "kind: xivo\r\x01", "f.yaml:2: control characters are not allowed"},
		{"second document error", base + oneService + "---\na: [\n", "f.yaml:14: did not find expected node content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.yaml", []byte(tt.data))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c == nil {
					t.Fatal("Parse returned no config and no error")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestParse_defaults(t *testing.T) {
	t.Run("null is absent", func(t *testing.T) {
		data := base + oneService + "    start_timeout: ~\n    ready: {tcp: \"h:1\", timeout: }\nmode:\nstate_dir: null\ninitial_status: ~\n"
		c, err := Parse("f.yaml", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		s := c.Services[0]
		if c.Mode != "manual" || c.StateDir != "/var/lib/resilience" || c.InitialStatus != "active" ||
			s.StartTimeout != DefaultStartTimeout || s.Ready.Timeout != DefaultReadyTimeout {
			t.Errorf("defaults not set: %s", dump(t, c))
		}
	})
	t.Run("zero is not absent", func(t *testing.T) {
		data := base + oneService + "    ready: {tcp: \"h:1\", interval: 0s}\n"
		_, err := Parse("f.yaml", []byte(data))
		want := "f.yaml:13: services[0].ready.interval: must be positive"
		if err == nil || err.Error() != want {
			t.Errorf("Parse error = %v, want %s", err, want)
		}
	})
	t.Run("explicit initial status", func(t *testing.T) {
		c, err := Parse("f.yaml", []byte(base+oneService+"initial_status: inactive\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.InitialStatus != "inactive" {
			t.Errorf("InitialStatus = %q, want inactive", c.InitialStatus)
		}
	})
}

func TestParse_paths(t *testing.T) {
	data := strings.Replace(base, "token: {env: PEER_TOKEN}", "token: {file: ../secret/peer}\n  ca_file: /etc/ssl/ca.pem", 1) +
		"state_dir: state\n" +
		"services:\n  - name: a\n    exec: {command: [./run], dir: work, log_file: /var/log/a.log}\n"
	c, err := Parse("/etc/resilience/node.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Services[0].Exec
	for _, tt := range []struct{ name, got, want string }{
		{"state_dir", c.StateDir, "/etc/resilience/state"},
		{"peer.token.file", c.Peer.Token.File, "/etc/secret/peer"},
		{"peer.ca_file", c.Peer.CAFile, "/etc/ssl/ca.pem"},
		{"exec.dir", e.Dir, "/etc/resilience/work"},
		{"exec.log_file", e.LogFile, "/var/log/a.log"},
		{"exec.command[0]", e.Command[0], "./run"}, // looked up by exec, not a file of the config
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestParse_roundTrip(t *testing.T) {
	// A config written by yaml.Marshal, as the lab writes them, reads back
	// the same.
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			data, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(c.File, data)
			if err != nil {
				t.Fatalf("Parse of marshalled config: %v\n%s", err, data)
			}
			if got, want := dump(t, again), string(data); got != want {
				t.Errorf("round trip changed the config:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestParse_costly(t *testing.T) {
	// Files built to be slow to check must fail fast, with a message.
	var bomb strings.Builder // each env merges the previous one ten times
	bomb.WriteString(base + "services:\n  - {name: s0, exec: {command: [x], env: &e0 {A: x}}}\n")
	for i := 1; i <= 12; i++ {
		prev := "*e" + strconv.Itoa(i-1)
		fmt.Fprintf(&bomb, "  - {name: s%d, exec: {command: [x], env: &e%d {<<: [%s]}}}\n", i, i, strings.Repeat(prev+", ", 9)+prev)
	}
	var keys strings.Builder
	keys.WriteString(base + oneService + "log:\n")
	for i := range maxKeys + 1 {
		fmt.Fprintf(&keys, "  k%d: x\n", i)
	}
	var services strings.Builder
	services.WriteString(base + "services:\n")
	for range 20000 {
		services.WriteString("  - {name: a, command: {start: a, stop: b}}\n")
	}
	var unknown strings.Builder
	unknown.WriteString(base + oneService)
	for i := range 5000 {
		fmt.Fprintf(&unknown, "k%d: x\n", i)
	}
	tests := []struct {
		name, data, want string
	}{
		{"alias bomb", bomb.String(), "document contains excessive aliasing"},
		{"many keys", keys.String(), "f.yaml:13: log: more than 10000 keys"},
		{"many errors", services.String(), "f.yaml: too many errors (19899 more)"},
		{"many unknown keys", unknown.String(), "f.yaml:112: k99: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("f.yaml", []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %.300v, want it to contain %q", err, tt.want)
			}
			var errs Errors
			if errors.As(err, &errs) && len(errs) > maxErrors+1 {
				t.Errorf("Parse returned %d errors, want at most %d", len(errs), maxErrors+1)
			}
			if d := time.Since(start); d > 20*time.Second { // a guard against blow-ups, not a speed target
				t.Errorf("Parse took %v", d)
			}
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Run("built in Go", func(t *testing.T) {
		c := Default()
		c.Kind = KindXiVO
		c.Role = RoleMain
		c.Listen.Address = "127.0.0.1:8441"
		c.Peer = &Peer{Name: "b", URL: "http://127.0.0.1:8442", Token: Secret{Env: "T"}, Timeout: DefaultPeerTimeout}
		c.Services = []Service{
			{Name: "a", Command: &Command{Start: "a", Stop: "b"}, StartTimeout: sec(1), StopTimeout: sec(1)},
			{Name: "a", Command: &Command{Start: "a", Stop: "b"}, StartTimeout: sec(1)},
		}
		want := "name: required\n" +
			`services[1].name: duplicate service name "a" (first at services[0].name)` + "\n" +
			"services[1].stop_timeout: must be positive"
		err := c.Validate()
		if err == nil || err.Error() != want {
			t.Errorf("Validate() = %v, want:\n%s", err, want)
		}
		c.Name = "a"
		c.Services = c.Services[:1]
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v, want nil", err)
		}
	})
}

func TestConfig_Loopback(t *testing.T) {
	tests := []struct {
		addr     string
		loopback bool
	}{
		{"127.0.0.1:8441", true},
		{"127.0.0.42:8441", true},
		{"127.255.255.254:1", true},
		{"[::1]:8441", true},
		{"[::ffff:127.0.0.1]:8441", true},
		{"localhost:8441", true},
		{"0.0.0.0:8441", false},
		{"[::]:8441", false},
		{"192.0.2.10:8443", false},
		{"128.0.0.1:1", false},
		{"localhost", false},
		{"", false},
		{"xivo.example.com:8443", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			c := &Config{Listen: Listen{Address: tt.addr}}
			if got := c.Loopback(); got != tt.loopback {
				t.Errorf("Loopback() = %v, want %v", got, tt.loopback)
			}
		})
	}
}

func TestConfig_NeedsTLS(t *testing.T) {
	tls := &TLS{CertFile: "c", KeyFile: "k"}
	tests := []struct {
		name   string
		listen Listen
		needs  bool
	}{
		{"loopback", Listen{Address: "127.0.0.1:1"}, false},
		{"any address", Listen{Address: "0.0.0.0:1"}, true},
		{"any address with tls", Listen{Address: "0.0.0.0:1", TLS: tls}, false},
		{"any address insecure", Listen{Address: "0.0.0.0:1", InsecureHTTP: true}, false},
		{"half tls", Listen{Address: "0.0.0.0:1", TLS: &TLS{CertFile: "c"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Listen: tt.listen}
			if got := c.NeedsTLS(); got != tt.needs {
				t.Errorf("NeedsTLS() = %v, want %v", got, tt.needs)
			}
		})
	}
}

func TestError_Error(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "a.yaml", Line: 12, Path: "services[2].ready.timeout", Msg: `invalid duration "3x"`}, `a.yaml:12: services[2].ready.timeout: invalid duration "3x"`},
		{Error{File: "a.yaml", Line: 3, Msg: "found character that cannot start any token"}, "a.yaml:3: found character that cannot start any token"},
		{Error{File: "a.yaml", Msg: "file is empty"}, "a.yaml: file is empty"},
		{Error{Line: 4, Path: "name", Msg: "required"}, "line 4: name: required"},
		{Error{Path: "name", Msg: "required"}, "name: required"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	errs := Errors{{Path: "a", Msg: "x"}, {Path: "b", Msg: "y"}}
	if got, want := errs.Error(), "a: x\nb: y"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
	var one *Error
	if !errors.As(error(errs), &one) || one.Path != "a" {
		t.Errorf("errors.As(Errors, *Error) = %v", one)
	}
}

func TestLoad_missing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want os.ErrNotExist", err)
	}
}

func TestLoad_tooLarge(t *testing.T) {
	name := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(name, []byte("#"+strings.Repeat("x", 2*MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(name)
	if want := name + ": file is larger than 1 MiB"; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
}
