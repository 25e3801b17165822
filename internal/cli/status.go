package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/xivo-resilience/resilience/internal/app"
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
	raw, err := c.StatusJSON(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		b.WriteByte('\n')
		_, err := b.WriteTo(e.stdout)
		return err
	}
	// Each kind has its own status: read the kind, then the status.
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	now := time.Now()
	switch head.Kind {
	case "edge":
		var s app.EdgeStatus
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		printEdgeStatus(e.stdout, s, now)
	case "mds":
		var s app.MDSStatus
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		printMDSStatus(e.stdout, s, now)
	default:
		var s node.Snapshot
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		printStatus(e.stdout, s, now)
	}
	return nil
}

// printEdgeStatus writes an edge's status for people: each route's
// choice and why, each side, and the nodes as the Edge knows them.
func printEdgeStatus(w io.Writer, s app.EdgeStatus, now time.Time) {
	fmt.Fprintf(w, "%s (edge), %d switches since start\n", s.Name, s.Switches)
	for _, r := range s.Routes {
		where := r.Listen
		if r.Kind == "http" {
			where = r.Host + r.PathPrefix
			if where == "" {
				where = "/"
			}
		}
		chosen := r.Chosen
		if chosen == "" {
			chosen = "none (maintenance page)"
		}
		fmt.Fprintf(w, "Route %s (%s %s): %s since %s (%s ago): %s\n", r.Name, r.Kind, where, chosen, r.Since.Local().Format("15:04:05"), ago(now, r.Since), r.Reason)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, b := range r.Backends {
			state := "usable"
			if !b.Usable {
				state = "not usable: " + b.Why
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\thealth %s\t%d sessions\t%s\n", b.Side, b.Name, b.Address, b.Health, b.Sessions, state)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "Nodes:")
	for _, n := range s.Nodes {
		if !n.Reachable {
			fmt.Fprintf(w, "  %s unreachable: %s\n", n.Name, n.Error)
			continue
		}
		fmt.Fprintf(w, "  %s %s, epoch %d (via %s, observed %s ago)\n", n.Name, n.Status, n.Epoch, n.Via, ago(now, n.ObservedAt))
	}
}

// printMDSStatus writes an mds's status for people: the bound contacts,
// which XiVO node each belongs to, and the alarm.
func printMDSStatus(w io.Writer, s app.MDSStatus, now time.Time) {
	fmt.Fprintf(w, "%s (mds), registrar on udp %s tcp %s\n", s.Name, orNone(s.Listen.UDP), orNone(s.Listen.TCP))
	if len(s.Bindings) == 0 {
		fmt.Fprintln(w, "Bindings: none")
	} else {
		fmt.Fprintln(w, "Bindings:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, b := range s.Bindings {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tfrom %s\tsince %s ago\texpires in %s\n", b.AOR, b.Contact, orNone(b.Node), b.Source, ago(now, b.Since), b.Expires.Sub(now).Round(time.Second))
		}
		tw.Flush()
	}
	if s.Alarm != "" {
		fmt.Fprintf(w, "Alarm:    %s\n", s.Alarm)
	}
	for _, wn := range s.Warnings {
		fmt.Fprintf(w, "  ! %s\n", wn.Message)
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
