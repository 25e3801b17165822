package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/xivo-resilience/resilience/internal/lab"
)

func runLab(ctx context.Context, e *env, args []string) error {
	fs := e.flags("lab", "[--dir DIR] [--base-port N]")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "resilience-lab"), "folder for configs, state, logs and lab.json")
	base := fs.Int("base-port", lab.DefaultBasePort, "first port: nodes listen on the ports after it")
	if err := parse(fs, args); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Starting the lab in %s ...\n", *dir)
	l, err := lab.Start(ctx, lab.Options{Dir: *dir, BasePort: *base, Binary: bin})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tKIND\tROLE\tURL\tCONFIG")
	for _, n := range l.Info.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Kind, n.Role, n.URL, n.Config)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\nUsers' entry point (the Edge): http://%s/ (XiVO), http://%s/xuc (CC), sip:%s (SIP)\n", l.EdgeHTTP(), l.EdgeHTTP(), l.EdgeSIP())
	fmt.Fprintf(e.stdout, "Admin login: admin / %s\n", l.Info.Admin.Password)
	fmt.Fprintf(e.stdout, "Scripts: %s (nodes, admin login, operate token)\n", filepath.Join(*dir, "lab.json"))
	fmt.Fprintf(e.stdout, "Try a failover:\n")
	fmt.Fprintf(e.stdout, "  export RESILIENCE_TOKEN=$(jq -r .token %s)\n", filepath.Join(*dir, "lab.json"))
	fmt.Fprintf(e.stdout, "  %s start-services --node %s --force --reason 'failover drill'\n", bin, l.Info.Nodes[1].URL)
	fmt.Fprintf(e.stdout, "  %s stop-services  --node %s\n", bin, l.Info.Nodes[0].URL)
	fmt.Fprintf(e.stdout, "  then open http://%s/ again: the Edge now relays to xivo-standby\n", l.EdgeHTTP())
	fmt.Fprintf(e.stdout, "Press Ctrl-C to stop the lab.\n")
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "Stopping the lab ...")
	return l.Stop(context.Background())
}
