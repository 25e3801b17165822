package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/xivo-resilience/resilience/internal/node"
)

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := e.flags("status", "[--node URL] [--json]")
	var cf clientFlags
	cf.register(fs, e)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := cf.client(e)
	if err != nil {
		return err
	}
	s, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printStatus(e.stdout, s, time.Now())
	return nil
}

// printStatus writes a status for people.
func printStatus(w io.Writer, s node.Snapshot, now time.Time) {
	fmt.Fprintf(w, "%s (%s, %s, %s mode)\n", s.Name, s.Kind, s.Role, s.Mode)
	fmt.Fprintf(w, "Status:   %s since %s (%s ago), epoch %d\n", s.Status, s.Since.Local().Format("2006-01-02 15:04:05"), ago(now, s.Since), s.Epoch)
	if s.Transition != nil {
		fmt.Fprintf(w, "Running:  %s by %s, for %s\n", s.Transition.Action, s.Transition.Actor, ago(now, s.Transition.StartedAt))
	}
	if s.Error != "" {
		fmt.Fprintf(w, "Error:    %s\n", s.Error)
	}
	if p := s.Peer; p != nil {
		switch {
		case p.Error != "":
			fmt.Fprintf(w, "Peer:     %s unreachable: %s\n", p.Name, p.Error)
		case p.ObservedAt.IsZero():
			fmt.Fprintf(w, "Peer:     %s not observed yet\n", p.Name)
		default:
			fmt.Fprintf(w, "Peer:     %s %s, epoch %d (observed %s ago)\n", p.Name, p.Status, p.Epoch, ago(now, p.ObservedAt))
		}
	}
	if f := s.Followed; f != nil {
		switch {
		case f.Error != "":
			fmt.Fprintf(w, "Follows:  %s unreachable since %s: %s\n", f.Name, f.UnreachableSince.Local().Format("15:04:05"), f.Error)
		case f.ObservedAt.IsZero():
			fmt.Fprintf(w, "Follows:  %s not observed yet\n", f.Name)
		default:
			fmt.Fprintf(w, "Follows:  %s %s, epoch %d (via %s, confirmed %s ago)\n", f.Name, f.Status, f.Epoch, f.Via, ago(now, f.ObservedAt))
		}
	}
	if s.Takeover != nil {
		fmt.Fprintf(w, "Takeover: from %s (epoch %d) at %s\n", s.Takeover.From, s.Takeover.PeerEpoch, s.Takeover.At.Local().Format("15:04:05"))
	}
	printServices(w, s.Services)
	if len(s.Warnings) > 0 {
		fmt.Fprintln(w, "Warnings:")
		for _, wn := range s.Warnings {
			fmt.Fprintf(w, "  ! %s\n", wn.Message)
		}
	}
}

func printServices(w io.Writer, svcs []node.ServiceStatus) {
	fmt.Fprintln(w, "Services:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, svc := range svcs {
		extra := svc.Error
		if svc.Restarts > 0 {
			extra = fmt.Sprintf("restarted %d times %s", svc.Restarts, extra)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", svc.Name, svc.State, extra)
	}
	tw.Flush()
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Hour).String()
	}
}
