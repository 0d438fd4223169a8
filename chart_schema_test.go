package main

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

// chartOwned are the flags the Helm chart sets itself, or that make no
// sense in its DaemonSet: its schema refuses them in values.config.
var chartOwned = []string{"output-dir", "http-addr", "once", "dry-run"}

// The chart's values.schema.json knows every key of edsync's config file,
// with the flag's type, and no key edsync does not know: a new flag fails
// here until the schema lets the chart's users set it, and a removed one
// until the schema stops offering it.
func TestChartSchemaKnowsEveryFlag(t *testing.T) {
	data, err := os.ReadFile("charts/edsync/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type prop struct {
		Type    string  `json:"type"`
		Pattern string  `json:"pattern"`
		OneOf   []*prop `json:"oneOf"`
		AllOf   []*prop `json:"allOf"` // a duration, and not a zero one
		Items   *prop   `json:"items"`
	}
	var schema struct {
		Properties struct {
			Config struct {
				AdditionalProperties *bool           `json:"additionalProperties"`
				Properties           map[string]prop `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	cfg := schema.Properties.Config
	if cfg.AdditionalProperties == nil || *cfg.AdditionalProperties {
		t.Error("config allows keys the schema does not list: a misspelt key would reach edsync, which refuses it at start")
	}
	// A list flag takes a list, or one item as a string.
	isList := func(p prop) bool {
		return p.Type == "array" || slices.ContainsFunc(p.OneOf, func(o *prop) bool { return o.Type == "array" })
	}
	known := map[string]bool{keyClusters: true, keyClusterTemplate: true, keyClusterTemplates: true, keyTemplateNamespaces: true, keySources: true}
	for _, f := range flags() {
		name := f.Names()[0]
		if notInFile[name] {
			continue
		}
		known[name] = true
		p, ok := cfg.Properties[name]
		if slices.Contains(chartOwned, name) {
			if ok {
				t.Errorf("config.%s is the chart's, but the schema lets values set it", name)
			}
			continue
		}
		if !ok {
			t.Errorf("flag --%s: no config.%s in the chart's schema", name, name)
			continue
		}
		var good bool
		switch f.(type) {
		case *cli.BoolFlag:
			good = p.Type == "boolean"
		case *cli.IntFlag:
			good = p.Type == "integer"
		case *cli.DurationFlag:
			good = p.Type == "string" && p.Pattern != "" ||
				slices.ContainsFunc(p.AllOf, func(o *prop) bool { return o.Type == "string" && o.Pattern != "" })
		case *cli.StringSliceFlag:
			good = isList(p)
		case *cli.StringFlag:
			good = p.Type == "string" || len(p.OneOf) > 0 // max-file-size: bytes or a size
		}
		if !good {
			t.Errorf("config.%s: schema %+v does not match flag type %T", name, p, f)
		}
	}
	for name := range cfg.Properties {
		if !known[name] {
			t.Errorf("config.%s: the schema offers a key edsync's config file does not have", name)
		}
	}
}
