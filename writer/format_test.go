package writer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    Format
		wantExt string
		wantErr bool
	}{
		{in: "", want: FormatJSON, wantExt: ".json"},
		{in: "json", want: FormatJSON, wantExt: ".json"},
		{in: "YAML", want: FormatYAML, wantExt: ".yaml"},
		{in: "yml", want: FormatYAML, wantExt: ".yaml"},
		{in: " pb ", want: FormatPB, wantExt: ".pb"},
		{in: "pb_text", wantErr: true},
		{in: "xml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFormat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFormat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want || got.Ext() != tt.wantExt {
				t.Errorf("ParseFormat(%q) = %q (ext %q), want %q (ext %q)", tt.in, got, got.Ext(), tt.want, tt.wantExt)
			}
		})
	}
}

func TestFileName(t *testing.T) {
	tests := []struct {
		cluster string
		format  Format
		want    string
		wantErr bool
	}{
		{cluster: "default/web/http", format: FormatJSON, want: "default_web_http.json"},
		{cluster: "default/web", format: FormatYAML, want: "default_web.yaml"},
		{cluster: "a_b", format: FormatPB, want: "a%5Fb.pb"},
		{cluster: "100%", format: FormatJSON, want: "100%25.json"},
		{cluster: "a b:c", format: FormatJSON, want: "a%20b%3Ac.json"},
		{cluster: "ünï", format: FormatJSON, want: "%C3%BCn%C3%AF.json"},
		{cluster: ".", format: FormatJSON, want: "%2E.json"},
		{cluster: "..", format: FormatJSON, want: "%2E..json"},
		{cluster: ".hidden", format: FormatJSON, want: "%2Ehidden.json"},
		{cluster: "/etc/passwd", format: FormatJSON, want: "_etc_passwd.json"},
		{cluster: "../x", format: FormatJSON, want: "%2E._x.json"},
		{cluster: "a\x00b", format: FormatJSON, want: "a%00b.json"},
		{cluster: "ns/svc/Port-1.2", format: FormatJSON, want: "ns_svc_Port-1.2.json"},
		{cluster: strings.Repeat("a", 250), format: FormatJSON, want: strings.Repeat("a", 250) + ".json"}, // 255 bytes
		{cluster: strings.Repeat("a", 250), format: FormatPB, want: strings.Repeat("a", 250) + ".pb"},
		{cluster: strings.Repeat("_", 84), format: FormatPB, want: strings.Repeat("%5F", 84) + ".pb"}, // 255 bytes
		{cluster: "", format: FormatJSON, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.cluster, func(t *testing.T) {
			got, err := FileName(tt.cluster, tt.format)
			if (err != nil) != tt.wantErr {
				t.Fatalf("FileName(%q) = %q, %v; want error %v", tt.cluster, got, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want {
				t.Errorf("FileName(%q) = %q, want %q", tt.cluster, got, tt.want)
			}
			back, ok := ClusterName(got, tt.format)
			if !ok || back != tt.cluster {
				t.Errorf("ClusterName(%q) = %q, %v; want %q", got, back, ok, tt.cluster)
			}
		})
	}
}

func TestClusterNameRejectsOthers(t *testing.T) {
	for _, file := range []string{
		".json",               // empty name
		".tmp",                // our temp folder
		".hidden.json",        // raw leading dot
		"a.yaml",              // other format
		"a.json.tmp",          // other extension
		"a%5fb.json",          // lowercase escape
		"%61.json",            // needless escape of a kept byte
		"a%2.json",            // short escape
		"a%.json",             // short escape
		"a%ZZb.json",          // bad hex
		"a b.json",            // byte that FileName escapes
		"a%2Fb.json",          // '/' is written as '_', never as %2F
		"a/b.json",            // a path, not a name
		"%2E%2E.json",         // ".." escaped in full: FileName writes "%2E."
		"%2E%2Ehidden..json",  // second dot escaped
		"caf\xc3\xa9.json",    // raw non-ASCII
		"default_web_http.pb", // right name, other format
	} {
		if name, ok := ClusterName(file, FormatJSON); ok {
			t.Errorf("ClusterName(%q) = %q, true; want not ours", file, name)
		}
	}
}

// Names whose escaped form does not fit in 255 bytes get a shortened name:
// a readable prefix, "~", 32 hex digits of the full name's SHA-256, the
// extension. It is at most 255 bytes, deterministic, differs for names that
// share a long prefix, and never reads as another cluster's plain name.
func TestFileNameShortensLongNames(t *testing.T) {
	long := "ns/" + strings.Repeat("x", 300) + "/http"
	tests := []struct {
		cluster, format string
		wantPrefix      string
	}{
		{cluster: strings.Repeat("a", 251), format: "json", wantPrefix: strings.Repeat("a", 217) + "~"},
		{cluster: strings.Repeat("a", 253), format: "pb", wantPrefix: strings.Repeat("a", 219) + "~"},
		{cluster: long, format: "yaml", wantPrefix: "ns_" + strings.Repeat("x", 214) + "~"},
		// 85 '_' escape to 255 bytes + ext; the prefix never splits an escape.
		{cluster: strings.Repeat("_", 85), format: "pb", wantPrefix: strings.Repeat("%5F", 73) + "~"},
		{cluster: "aa" + strings.Repeat("_", 85), format: "json", wantPrefix: "aa" + strings.Repeat("%5F", 71) + "~"},
	}
	for _, tt := range tests {
		t.Run(tt.cluster[:10]+"/"+tt.format, func(t *testing.T) {
			f, _ := ParseFormat(tt.format)
			got, err := FileName(tt.cluster, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > 255 || !strings.HasPrefix(got, tt.wantPrefix) || !strings.HasSuffix(got, f.Ext()) {
				t.Fatalf("FileName = %q (%d bytes), want %q + 32 hex digits + %s, at most 255 bytes", got, len(got), tt.wantPrefix, f.Ext())
			}
			hash := strings.TrimSuffix(strings.TrimPrefix(got, tt.wantPrefix), f.Ext())
			if len(hash) != 32 || strings.Trim(hash, "0123456789abcdef") != "" {
				t.Fatalf("FileName = %q: %q is not 32 hex digits", got, hash)
			}
			if again, _ := FileName(tt.cluster, f); again != got {
				t.Fatalf("not deterministic: %q, then %q", got, again)
			}
			if c, ok := ClusterName(got, f); ok {
				t.Fatalf("ClusterName(%q) = %q: a shortened name reads as a plain one", got, c)
			}
			if !shortened(got, f.Ext()) {
				t.Fatalf("shortened(%q) = false", got)
			}
			other, _ := FileName(tt.cluster+"x", f)
			if other == got {
				t.Fatalf("%q and %q share the file %q", tt.cluster, tt.cluster+"x", got)
			}
		})
	}
	for _, plain := range []string{"default_web_http.json", "a~b.json", "x~0123456789abcdef0123456789abcdef.yaml"} {
		if shortened(plain, FormatJSON.Ext()) {
			t.Errorf("shortened(%q) = true", plain)
		}
	}
}

// checkFileName asserts the properties every file name must have.
func checkFileName(t *testing.T, cluster string, f Format) (string, bool) {
	t.Helper()
	name, err := FileName(cluster, f)
	if err != nil {
		if cluster != "" {
			t.Errorf("FileName(%q): %v", cluster, err)
		}
		return "", false
	}
	if strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") || len(name) > 255 {
		t.Errorf("FileName(%q) = %q: escapes the folder, hidden or too long", cluster, name)
	}
	if !strings.HasSuffix(name, f.Ext()) {
		t.Errorf("FileName(%q) = %q: no %s extension", cluster, name, f.Ext())
	}
	if shortened(name, f.Ext()) {
		return name, true // known by the content of its file
	}
	back, ok := ClusterName(name, f)
	if !ok || back != cluster {
		t.Errorf("ClusterName(FileName(%q)) = %q, %v", cluster, back, ok)
	}
	return name, true
}

// TestFileNameInjective draws many names from a small alphabet rich in the
// bytes that matter ('/', '_', '%', '.', hex digits), so collisions would
// show, and checks that no two names share a file.
func TestFileNameInjective(t *testing.T) {
	const alphabet = "/_%.-aAfF09 \x00\xff:"
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]string{}
	for range 200_000 {
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cluster := string(b)
		name, ok := checkFileName(t, cluster, FormatJSON)
		if !ok {
			continue
		}
		if other, dup := seen[name]; dup && other != cluster {
			t.Fatalf("%q and %q both map to %q", other, cluster, name)
		}
		seen[name] = cluster
	}
	if len(seen) < 10_000 {
		t.Fatalf("only %d distinct names drawn", len(seen))
	}
}

func FuzzFileName(f *testing.F) {
	for _, s := range []string{"default/web/http", "a_b", "%41", ".", "..", "../x", "ünï", "a%5Fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cluster string) {
		name, ok := checkFileName(t, cluster, FormatYAML)
		if !ok {
			return
		}
		// Injectivity in the other direction: a name decodes to one cluster,
		// and only the canonical spelling decodes at all.
		if again, _ := FileName(cluster, FormatYAML); again != name {
			t.Fatalf("FileName not deterministic")
		}
		if c, ok := ClusterName(cluster, FormatYAML); ok {
			if n, _ := FileName(c, FormatYAML); n != cluster {
				t.Fatalf("ClusterName(%q) = %q but FileName gives %q", cluster, c, n)
			}
		}
	})
}
