package writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// clusterTypeURL is the type of every resource of the CDS file.
const clusterTypeURL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

// CDSOptions configure a CDS writer.
type CDSOptions struct {
	// Path is the CDS file. Its extension is its format, as Envoy picks
	// the parser by it: .json, .yaml (or .yml) or .pb. Its folder must
	// exist, unless in dry-run.
	Path string
	// DryRun prints the file that would be written to Out instead.
	DryRun bool
	// Out receives the dry-run output; nil means os.Stdout.
	Out io.Writer
	// Logger gets a line per file written at Debug and failures at Error.
	Logger *slog.Logger
}

// CDS writes the CDS file: one DiscoveryResponse whose resources are
// Envoy clusters, the whole set each time (Envoy removes a cluster missing
// from a new version). Like the cluster files, it is replaced by an atomic
// rename, its version_info is a hash of its content, and content already
// on disk is not written again. Its methods may be called from several
// goroutines: they run one at a time.
type CDS struct {
	path, tmpDir string
	format       Format
	dryRun       bool
	out          io.Writer
	log          *slog.Logger
	rename       renameFunc

	mu sync.Mutex
	// digest is the content last written or found on disk; known says
	// whether there is one (the first Write compares with the file).
	digest [sha256.Size]byte
	known  bool
	id     fileIdent
	// version is the version_info of the content known.
	version string
}

// Version is the version_info of what the CDS file holds, as last written
// or found ("" before the first Write).
func (c *CDS) Version() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known {
		return ""
	}
	return c.version
}

// CDSFormat is the format of a CDS file by its extension.
func CDSFormat(path string) (Format, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		return FormatJSON, nil
	case ".yaml", ".yml":
		return FormatYAML, nil
	case ".pb":
		return FormatPB, nil
	default:
		return "", fmt.Errorf("%s: Envoy reads a file by its extension: want .json, .yaml, .yml or .pb, not %q", path, ext)
	}
}

// NewCDS checks the CDS file's folder and prepares the temp folder beside
// it (shared with a Writer of the same folder: names are random).
func NewCDS(o CDSOptions) (*CDS, error) {
	if o.Path == "" {
		return nil, errors.New("writer: no CDS file given")
	}
	format, err := CDSFormat(o.Path)
	if err != nil {
		return nil, fmt.Errorf("writer: %w", err)
	}
	dir := filepath.Dir(o.Path)
	c := &CDS{
		path: o.Path, tmpDir: filepath.Join(dir, tmpDirName), format: format,
		dryRun: o.DryRun, out: o.Out, log: o.Logger, rename: renameAt,
	}
	if c.out == nil {
		c.out = os.Stdout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "writer.cds")
	if c.dryRun {
		return c, nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("writer: CDS file's folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("writer: CDS file's folder %s is not a folder", dir)
	}
	// The folder may be the output folder or another one: remove what a
	// crash left of this file's temp files only.
	prefix := tempPrefix(c.path) + "."
	removed, err := cleanTmpOf(dir, func(name string) bool { return strings.HasPrefix(name, prefix) })
	if err != nil {
		return nil, fmt.Errorf("writer: CDS file's folder: %w", err)
	}
	if removed > 0 {
		c.log.Info("removed leftover temp files", "dir", c.tmpDir, "count", removed)
	}
	return c, nil
}

// Path is the CDS file.
func (c *CDS) Path() string { return c.path }

// Format is the CDS file's format.
func (c *CDS) Format() Format { return c.format }

// Write replaces the CDS file with the clusters, in the order given (the
// caller sorts them: the same set must give the same bytes). It returns
// whether the file was replaced (false: it already held them). Each
// cluster must pass ValidateAll; if one does not, nothing is written.
func (c *CDS) Write(clusters []*clusterv3.Cluster) (written bool, err error) {
	data, version, err := EncodeCDS(clusters, c.format)
	if err != nil {
		return false, fmt.Errorf("CDS file %s: %w", c.path, err)
	}
	digest := sha256.Sum256(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dryRun {
		if c.known && digest == c.digest {
			return false, nil
		}
		if err := c.print(data); err != nil {
			return false, err
		}
		c.digest, c.known, c.version = digest, true, version
		return true, nil
	}
	if c.known && digest == c.digest && c.sameFile() {
		return false, nil
	}
	if !c.known {
		// A restart finds the file of the previous run: unchanged content
		// is not written again (Envoy would not reload, but a rename is a
		// needless inotify event for it and for whoever watches).
		if old, id, err := cwd.read(c.path); err == nil && bytes.Equal(old, data) {
			c.digest, c.known, c.id, c.version = digest, true, id, version
			return false, nil
		}
	}
	id, err := writeAtomic(c.tmpDir, cwd, c.path, data, !c.known, c.rename)
	if err != nil {
		c.known = false
		c.log.Error("CDS file not written; the old one stays", "path", c.path, "error", err)
		return false, fmt.Errorf("CDS file %s: %w", c.path, err)
	}
	if err := syncDir(filepath.Dir(c.path)); err != nil {
		// Renamed: Envoy sees the new file; only durability is in doubt.
		c.log.Warn("fsync of the CDS file's folder failed", "path", c.path, "error", err)
	}
	c.digest, c.known, c.id, c.version = digest, true, id, version
	c.log.Debug("wrote", "path", c.path, "version", version, "clusters", len(clusters))
	return true, nil
}

// sameFile says whether the file at the path is still the one we renamed
// there (someone may have removed or replaced it).
func (c *CDS) sameFile() bool {
	fi, err := os.Stat(c.path)
	return err == nil && identOf(fi) == c.id
}

// print shows the file as dry-run output, as Writer.print does.
func (c *CDS) print(data []byte) error {
	content := data
	if c.format == FormatPB {
		var err error
		if content, err = pbText(data); err != nil {
			return fmt.Errorf("%s: text format: %w", c.path, err)
		}
	}
	buf := append([]byte("# "+c.path+"\n"), content...)
	if !bytes.HasSuffix(buf, []byte("\n")) {
		buf = append(buf, '\n')
	}
	if _, err := c.out.Write(buf); err != nil {
		return fmt.Errorf("%s: dry-run output: %w", c.path, err)
	}
	return nil
}

// EncodeCDS renders the CDS file's content: a DiscoveryResponse holding the
// clusters in the order given, version_info a hash of their encoding. It
// fails on a cluster that does not pass ValidateAll, or on two clusters of
// one name (Envoy rejects such a file whole).
func EncodeCDS(clusters []*clusterv3.Cluster, f Format) (data []byte, version string, err error) {
	names := make(map[string]bool, len(clusters))
	encoded := make([][]byte, len(clusters))
	h := sha256.New()
	for i, cl := range clusters {
		if names[cl.GetName()] {
			return nil, "", fmt.Errorf("cluster %q listed twice", cl.GetName())
		}
		names[cl.GetName()] = true
		if err := cl.ValidateAll(); err != nil {
			return nil, "", fmt.Errorf("cluster %q: %w", cl.GetName(), err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cl)
		if err != nil {
			return nil, "", fmt.Errorf("cluster %q: %w", cl.GetName(), err)
		}
		encoded[i] = b
		h.Write(protowire.AppendVarint(nil, uint64(len(b))))
		h.Write(b)
	}
	version = hex.EncodeToString(h.Sum(nil)[:8])
	switch f {
	case FormatPB:
		data = protowire.AppendTag(nil, versionNum, protowire.BytesType)
		data = protowire.AppendString(data, version)
		for _, b := range encoded {
			anyLen := protowire.SizeTag(typeURLNum) + protowire.SizeBytes(len(clusterTypeURL)) +
				protowire.SizeTag(valueNum) + protowire.SizeBytes(len(b))
			data = protowire.AppendTag(data, resourcesNum, protowire.BytesType)
			data = protowire.AppendVarint(data, uint64(anyLen))
			data = protowire.AppendTag(data, typeURLNum, protowire.BytesType)
			data = protowire.AppendString(data, clusterTypeURL)
			data = protowire.AppendTag(data, valueNum, protowire.BytesType)
			data = protowire.AppendBytes(data, b)
		}
	case FormatYAML:
		data = []byte("version_info: '" + version + "'\nresources:")
		if len(clusters) == 0 {
			data = append(data, " []"...)
		}
		data = append(data, '\n')
		for _, cl := range clusters {
			block, err := yamlBlock(cl)
			if err != nil {
				return nil, "", fmt.Errorf("cluster %q: %w", cl.GetName(), err)
			}
			data = append(data, "- '@type': "+clusterTypeURL+"\n"...)
			data = appendIndented(data, block, "  ", "  ")
		}
	default:
		data = []byte("{\n  \"version_info\": \"" + version + "\",\n  \"resources\": [")
		for i, cl := range clusters {
			members, err := jsonMembers(cl, "    ")
			if err != nil {
				return nil, "", fmt.Errorf("cluster %q: %w", cl.GetName(), err)
			}
			if i > 0 {
				data = append(data, ',')
			}
			data = append(data, "\n    {\n      \"@type\": \""+clusterTypeURL+"\""...)
			if len(members) > 0 {
				data = append(data, ",\n"...)
				data = append(data, members...)
			}
			data = append(data, "\n    }"...)
		}
		if len(clusters) > 0 {
			data = append(data, "\n  "...)
		}
		data = append(data, "]\n}\n"...)
	}
	return data, version, nil
}

// SortClusters orders clusters by name: the CDS file lists them so.
func SortClusters(clusters []*clusterv3.Cluster) {
	slices.SortFunc(clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) })
}
