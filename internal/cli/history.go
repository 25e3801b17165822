package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

func runHistory(ctx context.Context, e *env, args []string) error {
	fs := e.flags("history", "[--node URL] [--limit N] [--json]")
	var cf clientFlags
	cf.register(fs, e)
	limit := fs.Int("limit", 20, "how many entries, newest first (at most 1000)")
	before := fs.Uint64("before", 0, "only entries older than this sequence number")
	asJSON := fs.Bool("json", false, "print the entries as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	entries, err := c.History(ctx, *limit, *before)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tRESULT\tEPOCH\tDETAILS")
	for _, en := range entries {
		details := en.Message
		if en.Reason != "" {
			details = strings.TrimSpace(fmt.Sprintf("reason %q %s", en.Reason, details))
		}
		actor := en.Actor
		if en.Remote != "" {
			actor += "@" + en.Remote
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", en.Seq, en.Time.Local().Format("2006-01-02 15:04:05"), actor, en.Action, en.Result, en.Epoch, details)
		for _, s := range en.Services {
			if s.Error != "" {
				fmt.Fprintf(tw, "\t\t\t\t\t\t  %s %s: %s\n", s.Name, s.State, s.Error)
			}
		}
	}
	return tw.Flush()
}
