package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The reference in docs/config.md must keep up with the code: its example
// must load, and every key must have a row.

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDocs_example(t *testing.T) {
	m := regexp.MustCompile("(?s)## Example: a Main XiVO\n\n```yaml\n(.*?)```").FindStringSubmatch(readDocs(t))
	if m == nil {
		t.Fatal("docs/config.md has no example of a Main XiVO")
	}
	c, err := Parse("/etc/resilience/resilience.yaml", []byte(m[1]))
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	if c.Kind != KindXiVO || c.Role != RoleMain || c.NeedsTLS() {
		t.Errorf("the example is not a Main XiVO with TLS: %s", dump(t, c))
	}
}

func TestDocs_everyKey(t *testing.T) {
	docs := readDocs(t)
	paths := keyPaths(reflect.TypeFor[Config](), "")
	if len(paths) < 40 {
		t.Fatalf("found only %d keys in Config: %v", len(paths), paths)
	}
	for _, p := range paths {
		// The tables of exec, command, docker and ready name their keys from there;
		name := p
		for _, sub := range []string{"exec.", "command.", "docker.", "ready."} {
			if strings.HasPrefix(p, "services[]."+sub) {
				name = strings.TrimPrefix(p, "services[].")
			}
		}
		// So do the backends of the edge's routes.
		for _, side := range []string{"routes[].main.", "routes[].standby.", "sip[].main.", "sip[].standby."} {
			if strings.HasPrefix(p, side) {
				name = "backend." + strings.TrimPrefix(p, side)
			}
		}
		if !strings.Contains(docs, "| `"+name+"` |") {
			t.Errorf("docs/config.md has no row for `%s`", name)
		}
	}
}

// keyPaths lists the paths of the keys whose values are not sections:
// listen.address, services[].exec.command...
func keyPaths(t reflect.Type, prefix string) []string {
	var paths []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		p := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			paths = append(paths, p)
			paths = append(paths, keyPaths(ft.Elem(), p+"[].")...)
			continue
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Secret]() {
			paths = append(paths, keyPaths(ft, p+".")...)
			continue
		}
		if ft == reflect.TypeFor[Secret]() {
			paths = append(paths, keyPaths(ft, p+".")...)
		}
		paths = append(paths, p)
	}
	return paths
}
