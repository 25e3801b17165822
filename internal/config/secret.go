package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSecretSize is the largest secret file Read accepts.
const MaxSecretSize = 64 << 10

// IsZero reports whether the secret names no source at all.
func (s Secret) IsZero() bool { return s.Env == "" && s.File == "" }

// Read returns the secret: the value of the environment variable Env, or
// the content of File without its trailing newline. An unset or empty
// variable, a missing, empty or too large file is an error that names the
// variable or the file.
func (s Secret) Read() (string, error) {
	switch {
	case s.Env != "" && s.File != "":
		return "", errors.New("read secret: both env and file are set")
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("read secret: environment variable %s is not set", s.Env)
		}
		if v == "" {
			return "", fmt.Errorf("read secret: environment variable %s is empty", s.Env)
		}
		return v, nil
	case s.File != "":
		return readSecretFile(s.File)
	default:
		return "", errors.New("read secret: neither env nor file is set")
	}
}

func readSecretFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if len(b) > MaxSecretSize {
		return "", fmt.Errorf("read secret %s: larger than 64 KiB", name)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("read secret %s: file is empty", name)
	}
	return v, nil
}
