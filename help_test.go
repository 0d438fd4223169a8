package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// --help fits the terminal: 80 columns when stdout is not one (its lines
// reached 324). Every word of the unwrapped help is still there, in order.
func TestHelpFitsTheWidth(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"envoy-config", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := edsync(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			for line := range strings.Lines(stdout) {
				line = strings.TrimSuffix(line, "\n")
				if n := utf8.RuneCountInString(line); n > 80 {
					t.Errorf("%d columns: %q", n, line)
				}
			}
		})
	}
}

func TestWrapHelp(t *testing.T) {
	in := "NAME:\n" +
		"   edsync - write Kubernetes EndpointSlices as Envoy file-based EDS\n\n" +
		"DESCRIPTION:\n" +
		"   " + strings.Repeat("words of a long description ", 6) + "\n\n" +
		"   Output\n\n" +
		"   --cluster NAME [ --cluster NAME ]  cluster NAME whose file must exist even with no endpoints, so Envoy can start (repeatable) [$EDSYNC_CLUSTER]\n" +
		"   --dry-run                          print each file instead of writing it (default: false) [$EDSYNC_DRY_RUN]\n"
	for _, width := range []int{40, 60, 80, 120} {
		var b bytes.Buffer
		h := &helpWriter{out: &b, width: width}
		// In pieces, as a template writes.
		for chunk := range slices.Chunk([]byte(in), 7) {
			if _, err := h.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Flush(); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !slices.Equal(strings.Fields(out), strings.Fields(in)) {
			t.Errorf("width %d: the words changed:\n%s", width, out)
		}
		for line := range strings.Lines(out) {
			line = strings.TrimSuffix(line, "\n")
			if n := utf8.RuneCountInString(line); n > width {
				t.Errorf("width %d: %d columns: %q", width, n, line)
			}
		}
		// A flag's usage goes on in its own column, not under the flag's
		// names; with no room beside the names it starts on the next line,
		// indented under the flag.
		lines := strings.Split(out, "\n")
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "   --cluster") })
		col := strings.Index(lines[i], "cluster NAME whose")
		if col < 0 {
			col = 9
			if !strings.HasPrefix(lines[i+1], strings.Repeat(" ", col)+"cluster NAME whose") {
				t.Errorf("width %d: the usage is neither beside nor under the flag:\n%s", width, out)
			}
			i++
		}
		cont := 0
		for _, l := range lines[i+1:] {
			if strings.HasPrefix(l, "   --") {
				break
			}
			cont++
			if len(l) <= col || strings.TrimSpace(l[:col]) != "" || l[col] == ' ' {
				t.Errorf("width %d: %q does not go on in column %d", width, l, col)
			}
		}
		if cont == 0 {
			t.Errorf("width %d: --cluster's usage was not wrapped:\n%s", width, out)
		}
	}
}
