package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/edsync/edsync/status"
)

// statusCommand is `edsync status`: it asks a running edsync (its
// /debug/clusters, on --http-addr) what it has written and what Envoy made
// of it, prints a line per cluster, and exits 1 when a file is rejected or
// stale, so that it serves as a check (kubectl exec POD -c edsync --
// /edsync status). It needs nothing but the binary: the image has no shell.
func statusCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "print what a running edsync has written, cluster by cluster, and what Envoy did with it",
		Description: "Asks the edsync serving --http-addr (the same flag and EDSYNC_HTTP_ADDR as the edsync it goes with; " +
			"a bare :PORT asks 127.0.0.1) for its /debug/clusters and prints one line per cluster: its name, file, endpoints " +
			"(healthy/draining/unhealthy), the version in the file and when it was written, and, with --envoy-admin, what Envoy " +
			"runs: applied, pending (with its age), rejected (Envoy keeps its previous endpoints) or unknown.\n\n" +
			"Exits 1 when a file is rejected, when one is pending for longer than --stale-after, or when edsync does not answer; " +
			"0 otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http-addr", EnvVars: env("HTTP_ADDR"), Value: defaultHTTPAddr,
				Usage: "the running edsync's --http-addr `ADDR`"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text",
				Usage: "`FORMAT`: text (a line per cluster) or json (/debug/clusters as served)"},
			&cli.DurationFlag{Name: "stale-after", Value: time.Minute,
				Usage: "a file Envoy has not applied for `DURATION` after its rename counts as a problem"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{flagError(err)}
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status: unexpected argument %q", c.Args().First())
			}
			format := c.String("output")
			if format != "text" && format != "json" {
				return usagef("status: invalid --output %q: want text or json", format)
			}
			addr, err := parseHTTPAddr(c.String("http-addr"))
			if err != nil {
				return err
			}
			if addr == "" {
				return usagef("status: --http-addr is off: the running edsync serves nothing to ask")
			}
			body, snap, err := fetchStatus(c.Context, addr)
			if err != nil {
				return err
			}
			if format == "json" {
				if _, err := stdout.Write(body); err != nil {
					return err
				}
			} else {
				printStatus(stdout, snap)
			}
			return statusProblems(snap, c.Duration("stale-after"))
		},
	}
}

// fetchStatus gets /debug/clusters from the edsync at addr.
func fetchStatus(ctx context.Context, addr string) ([]byte, status.Snapshot, error) {
	var snap status.Snapshot
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // listening on every address: ask the local one
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + debugClustersPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, snap, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, snap, fmt.Errorf("status: no answer from edsync: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, snap, fmt.Errorf("status: %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, snap, fmt.Errorf("status: %s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		return nil, snap, fmt.Errorf("status: %s: %w", url, err)
	}
	return body, snap, nil
}

// printStatus writes a line per cluster, then the CDS file's, then a sum.
func printStatus(w io.Writer, s status.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tFILE\tENDPOINTS (H/D/U)\tVERSION\tWRITTEN\tENVOY")
	line := func(c status.Cluster) {
		written := "-"
		if !c.Written.IsZero() {
			written = c.Written.UTC().Format(time.RFC3339)
		}
		version := c.Version
		if version == "" {
			version = "(not written)"
		}
		endpoints := fmt.Sprintf("%d/%d/%d", c.Endpoints.Healthy, c.Endpoints.Draining, c.Endpoints.Unhealthy)
		if c.NodeLocal != "" { // internalTrafficPolicy: Local
			endpoints += " " + c.NodeLocal
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.File, endpoints, version, written, envoyColumn(c, s))
	}
	counts := map[status.State]int{}
	for _, c := range s.Clusters {
		line(c)
		counts[c.Envoy.State]++
	}
	if s.CDS != nil {
		line(*s.CDS)
	}
	tw.Flush()
	sum := fmt.Sprintf("%d clusters", len(s.Clusters))
	switch {
	case !s.ReadBack:
		sum += "; Envoy is not read back (--envoy-admin)"
	case !s.EnvoyUp:
		sum += "; Envoy's admin does not answer"
	default:
		sum += fmt.Sprintf(": %d applied, %d pending, %d rejected, %d unknown to Envoy",
			counts[status.StateApplied], counts[status.StatePending], counts[status.StateRejected], counts[status.StateUnknown])
	}
	fmt.Fprintln(w, sum)
}

// envoyColumn says what Envoy runs of c.
func envoyColumn(c status.Cluster, s status.Snapshot) string {
	if !s.ReadBack {
		return "-"
	}
	e := c.Envoy
	switch e.State {
	case status.StatePending:
		return fmt.Sprintf("pending %s", s.Time.Sub(c.Written).Round(time.Second))
	case status.StateRejected:
		return fmt.Sprintf("rejected (runs %s)", cmp.Or(e.Version, "nothing"))
	}
	return string(e.State)
}

// statusProblems returns an error naming what is wrong: a rejected file,
// or one pending (or not written) for longer than staleAfter.
func statusProblems(s status.Snapshot, staleAfter time.Duration) error {
	var rejected, stale []string
	check := func(c status.Cluster) {
		switch {
		case c.Envoy.State == status.StateRejected:
			rejected = append(rejected, c.Name)
		case c.Envoy.State == status.StatePending && s.Time.Sub(c.Written) > staleAfter:
			stale = append(stale, c.Name)
		}
	}
	for _, c := range s.Clusters {
		check(c)
	}
	if s.CDS != nil {
		check(*s.CDS)
	}
	var parts []string
	if len(rejected) > 0 {
		parts = append(parts, fmt.Sprintf("Envoy rejected %d file(s): %s", len(rejected), names(rejected)))
	}
	if len(stale) > 0 {
		parts = append(parts, fmt.Sprintf("%d file(s) pending for more than %s: %s", len(stale), staleAfter, names(stale)))
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New("status: " + strings.Join(parts, "; "))
}

// names lists at most five names.
func names(list []string) string {
	if len(list) > 5 {
		return strings.Join(list[:5], ", ") + fmt.Sprintf(" and %d more", len(list)-5)
	}
	return strings.Join(list, ", ")
}
