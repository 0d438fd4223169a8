package writer

import (
	"errors"
	"fmt"
	"strings"
)

// Format is the encoding of the files. Envoy picks its parser from the file's
// extension (Envoy rule 4), so the format and the extension always go together.
type Format string

const (
	FormatJSON Format = "json" // the default
	FormatYAML Format = "yaml"
	FormatPB   Format = "pb" // binary protobuf
)

// ParseFormat reads a format name as given in a flag: "json" (or empty),
// "yaml" (or "yml") or "pb", in any case.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "json":
		return FormatJSON, nil
	case "yaml", "yml":
		return FormatYAML, nil
	case "pb":
		return FormatPB, nil
	}
	return "", fmt.Errorf("unknown format %q (want json, yaml or pb)", s)
}

// Ext is the file extension that makes Envoy parse the file in this format.
func (f Format) Ext() string {
	switch f {
	case FormatYAML:
		return ".yaml"
	case FormatPB:
		return ".pb"
	}
	return ".json"
}

func (f Format) valid() bool {
	return f == FormatJSON || f == FormatYAML || f == FormatPB
}

// maxNameLen is the longest file name Linux (and most file systems) accept.
const maxNameLen = 255

// FileName maps a cluster name to the name of its file in the output folder.
//
// The mapping is injective and reversible (ClusterName is its inverse) and the
// result never leaves the folder: bytes [A-Za-z0-9.-] are kept, '/' becomes
// '_' (so "default/web/http" reads as "default_web_http"), every other byte,
// '_' and '%' included, becomes %XX in uppercase hex. A leading '.' is escaped
// as well, so a file is never hidden (our temp folder is) and never "." or "..".
// An empty name, or a file name longer than 255 bytes, is an error.
func FileName(cluster string, f Format) (string, error) {
	if cluster == "" {
		return "", errors.New("empty cluster name")
	}
	var b strings.Builder
	b.Grow(len(cluster) + len(f.Ext()))
	for i := 0; i < len(cluster); i++ {
		c := cluster[i]
		switch {
		case c == '/':
			b.WriteByte('_')
		case keep(c) && !(i == 0 && c == '.'):
			b.WriteByte(c)
		default:
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	b.WriteString(f.Ext())
	if b.Len() > maxNameLen {
		return "", fmt.Errorf("cluster name %q: file name is %d bytes, more than %d", cluster, b.Len(), maxNameLen)
	}
	return b.String(), nil
}

func keep(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-'
}

// ClusterName is the inverse of FileName: the cluster whose file this is. ok
// is false for any name FileName does not produce for this format (other
// extensions, hidden files, lowercase or needless escapes), so files that are
// not ours are never mistaken for clusters.
func ClusterName(file string, f Format) (cluster string, ok bool) {
	base, found := strings.CutSuffix(file, f.Ext())
	if !found || base == "" {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(base))
	for i := 0; i < len(base); i++ {
		switch c := base[i]; c {
		case '_':
			b.WriteByte('/')
		case '%':
			if i+2 >= len(base) {
				return "", false
			}
			hi, ok1 := unhex(base[i+1])
			lo, ok2 := unhex(base[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	cluster = b.String()
	// Re-encoding rejects every non-canonical spelling (a kept byte written
	// as %XX, a raw leading '.', a stray byte outside the kept set) in one
	// place, so the two functions cannot drift apart.
	if again, err := FileName(cluster, f); err != nil || again != file {
		return "", false
	}
	return cluster, true
}

// unhex decodes one uppercase hex digit: FileName never writes lowercase.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
