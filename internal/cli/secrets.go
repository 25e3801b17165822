package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/xivo-resilience/resilience/internal/auth"
)

func runHashPassword(ctx context.Context, e *env, args []string) error {
	fs := e.flags("hash-password", "< password")
	if err := parse(fs, args); err != nil {
		return err
	}
	pw, err := readLine(e)
	if err != nil {
		return err
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, h)
	return nil
}

func runHashToken(ctx context.Context, e *env, args []string) error {
	fs := e.flags("hash-token", "[--new] [< token]")
	fresh := fs.Bool("new", false, "make a new random token and print it, then its hash")
	if err := parse(fs, args); err != nil {
		return err
	}
	var tok string
	if *fresh {
		tok = auth.NewToken()
		fmt.Fprintln(e.stdout, tok)
	} else {
		var err error
		if tok, err = readLine(e); err != nil {
			return err
		}
		if len(tok) < 16 {
			return fmt.Errorf("token too short: use at least 16 characters (or --new)")
		}
	}
	fmt.Fprintln(e.stdout, auth.HashToken(tok))
	return nil
}

// readLine reads the first line of stdin, without its line end.
func readLine(e *env) (string, error) {
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 1024), 4096)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", fmt.Errorf("read stdin: %w", err)
		}
		return "", fmt.Errorf("nothing on stdin")
	}
	return strings.TrimRight(sc.Text(), "\r"), nil
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := e.flags("version", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "resilience", Version)
	return nil
}
