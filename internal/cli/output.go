package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/model"
)

// outputFormat is the value of -o/--output. It implements pflag.Value so a
// bad value fails while flags are parsed, with the allowed values named.
type outputFormat string

// Output formats.
const (
	formatTable outputFormat = "table"
	formatJSON  outputFormat = "json"
	formatYAML  outputFormat = "yaml"
)

func (f *outputFormat) String() string {
	if *f == "" {
		return string(formatTable)
	}
	return string(*f)
}

func (f *outputFormat) Set(s string) error {
	switch v := outputFormat(strings.ToLower(strings.TrimSpace(s))); v {
	case formatTable, formatJSON, formatYAML:
		*f = v
		return nil
	}
	return fmt.Errorf("must be one of table, json, yaml")
}

func (f *outputFormat) Type() string { return "format" }

// table is what a command shows in -o table: upper-case headers and rows of
// cells.
type table struct {
	headers []string
	rows    [][]string
}

// printer writes command results in the format -o asks for. JSON and YAML
// come from the API's JSON form, so field names match the REST API.
type printer struct {
	w      io.Writer
	format outputFormat
	now    time.Time
}

// print writes v as JSON or YAML, or, for -o table, the table tbl builds.
func (p printer) print(v any, tbl func() table) error {
	switch p.format {
	case formatJSON, formatYAML:
		return p.printData(v)
	}
	return writeTable(p.w, tbl())
}

// printMessage writes a one-line message for -o table and v otherwise, for
// verbs such as delete whose result is not a resource.
func (p printer) printMessage(v any, format string, args ...any) error {
	switch p.format {
	case formatJSON, formatYAML:
		return p.printData(v)
	}
	_, err := fmt.Fprintf(p.w, format+"\n", args...)
	return err
}

func (p printer) printData(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	out := buf.Bytes()
	if p.format == formatYAML {
		y, err := yaml.JSONToYAML(out)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		out = y
	}
	_, err := p.w.Write(out)
	return err
}

// writeTable aligns t with a tabwriter. Empty cells show as "-" so columns
// stay readable.
func writeTable(w io.Writer, t table) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.headers, "\t"))
	for _, r := range t.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			c = strings.Map(func(r rune) rune {
				if r == '\t' || r == '\n' || r == '\r' {
					return ' '
				}
				return r
			}, c)
			if c == "" {
				c = "-"
			}
			cells[i] = c
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// age renders how long ago t was as kubectl does: 42s, 5m, 2h, 3d. A zero
// time shows as "-".
func age(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// functionTable lists function versions.
func functionTable(fns []model.Function, now time.Time) table {
	t := table{headers: []string{"ID", "VERSION", "NAME", "STATUS", "IMAGE", "AGE"}}
	for _, f := range fns {
		t.rows = append(t.rows, []string{f.ID, f.VersionID, f.Name, string(f.Status), functionImage(f), age(f.CreatedAt, now)})
	}
	return t
}

// functionImage is what a version runs: its container image, else its Helm
// chart, else its models.
func functionImage(f model.Function) string {
	switch {
	case f.ContainerImage != "":
		return f.ContainerImage
	case f.HelmChart != "":
		return f.HelmChart
	}
	var names []string
	for _, m := range f.Models {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// deploymentTable shows one row per GPU specification of each deployment.
// DESIRED and RUNNING are what the autoscaler wants and what runs, and
// LAST SCALED its latest decision, when the server shows them.
func deploymentTable(deps []model.Deployment, now time.Time) table {
	t := table{headers: []string{"DEPLOYMENT", "FUNCTION", "VERSION", "STATUS", "GPU", "INSTANCE TYPE", "MIN", "MAX", "DESIRED", "RUNNING", "LAST SCALED", "AGE"}}
	for _, d := range deps {
		row := func(s model.GPUSpec, min, max string) []string {
			return []string{d.ID, d.FunctionID, d.FunctionVersionID, string(d.FunctionStatus), s.GPU, s.InstanceType, min, max,
				optInt(s.DesiredInstances), optInt(s.RunningInstances), lastScaled(s.ScalingDecisions, now), age(d.CreatedAt, now)}
		}
		if len(d.Specs) == 0 {
			t.rows = append(t.rows, row(model.GPUSpec{}, "", ""))
		}
		for _, s := range d.Specs {
			t.rows = append(t.rows, row(s, strconv.Itoa(s.MinInstances), strconv.Itoa(s.MaxInstances)))
		}
	}
	return t
}

func optInt(p *int) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(*p)
}

// lastScaled is "3->0 idle for 10m0s (2m ago)" for the latest decision.
func lastScaled(ds []model.ScalingDecision, now time.Time) string {
	if len(ds) == 0 {
		return ""
	}
	d := ds[len(ds)-1]
	return fmt.Sprintf("%d->%d %s (%s ago)", d.From, d.To, d.Reason, age(d.At, now))
}
