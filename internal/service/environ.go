package service

import (
	"maps"
	"os"
	"slices"
)

// Environ is the agent's environment plus env, in a stable order; later
// entries win, so env overrides the agent's. Backends and checks that run
// programs share it.
func Environ(env map[string]string) []string {
	out := os.Environ()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}
