package writer

import (
	"crypto/sha256"
	"encoding/hex"
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

// hashLen is the number of hex digits of the SHA-256 of the cluster name
// in a shortened file name: 128 bits, so that two long names colliding is
// not a concern.
const hashLen = 32

// hashMark separates a shortened name's prefix from its hash. FileName
// escapes '~' in plain names (%7E), so a plain name never holds one and
// the two kinds of names can never collide.
const hashMark = '~'

// FileName maps a cluster name to the name of its file in the output folder
// in the flat layout. The folders layout gives each cluster a folder of
// this name without the extension (FolderName).
//
// The mapping is injective and the result never leaves the folder: bytes
// [A-Za-z0-9.-] are kept, '/' becomes '_' (so "default/web/http" reads as
// "default_web_http"), every other byte, '_' and '%' included, becomes %XX
// in uppercase hex. A leading '.' is escaped as well, so a file is never
// hidden (our temp folder is) and never "." or "..". ClusterName is its
// inverse.
//
// When that name with the extension would pass 255 bytes (the file system's
// limit), the file name is shortened: the longest prefix of the escaped name
// that fits (never cutting a %XX in two), '~', the first 32 hex digits of
// the SHA-256 of the whole cluster name, and the extension. Such a name is
// not reversible; the file's content (the CLA's cluster_name) tells whose it
// is. An empty cluster name is an error.
func FileName(cluster string, f Format) (string, error) {
	return escapeName(cluster, f.Ext())
}

// FolderName is the name of cluster's folder in the output folder in the
// folders layout: FileName without the extension, shortened the same way
// past 255 bytes. FolderCluster is its inverse.
func FolderName(cluster string) (string, error) {
	return escapeName(cluster, "")
}

// escapeName is FileName with the extension ext.
func escapeName(cluster, ext string) (string, error) {
	if cluster == "" {
		return "", errors.New("empty cluster name")
	}
	var b strings.Builder
	b.Grow(len(cluster) + len(ext))
	for i := 0; i < len(cluster); i++ {
		c := cluster[i]
		switch {
		case c == '/':
			b.WriteByte('_')
		case keep(c) && !(i == 0 && c == '.'):
			b.WriteByte(c)
		default:
			const digits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&0xf])
		}
	}
	name := b.String()
	if len(name)+len(ext) <= maxNameLen {
		return name + ext, nil
	}
	cut := maxNameLen - len(ext) - 1 - hashLen
	// Back off to the start of a %XX cut in two.
	if name[cut-1] == '%' {
		cut--
	} else if name[cut-2] == '%' {
		cut -= 2
	}
	return shorten(name[:cut], cluster, ext), nil
}

// shorten makes the shortened file name of cluster from the escaped prefix.
func shorten(prefix, cluster, ext string) string {
	sum := sha256.Sum256([]byte(cluster))
	return prefix + string(hashMark) + hex.EncodeToString(sum[:hashLen/2]) + ext
}

// shortened reports whether file has the form of a shortened name with the
// extension ext: its cluster can be learned only from its content.
func shortened(file, ext string) bool {
	base, found := strings.CutSuffix(file, ext)
	if !found || len(file) > maxNameLen || len(base) < hashLen+1 {
		return false
	}
	mark := len(base) - hashLen - 1
	if base[mark] != hashMark || mark == 0 {
		return false
	}
	for _, c := range []byte(base[mark+1:]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func keep(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-'
}

// ClusterName is the inverse of FileName: the cluster whose file this is. ok
// is false for any name FileName does not produce for this format (other
// extensions, hidden files, lowercase or needless escapes), so files that are
// not ours are never mistaken for clusters, and for shortened names, whose
// cluster only the file's content tells.
func ClusterName(file string, f Format) (cluster string, ok bool) {
	return unescapeName(file, f.Ext())
}

// FolderCluster is the inverse of FolderName, as ClusterName is of FileName.
func FolderCluster(folder string) (cluster string, ok bool) {
	return unescapeName(folder, "")
}

func unescapeName(file, ext string) (cluster string, ok bool) {
	base, found := strings.CutSuffix(file, ext)
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
	if again, err := escapeName(cluster, ext); err != nil || again != file {
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
