package writer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// Cluster is one file to write: the CLA for the cluster Name.
// CLA.ClusterName must equal Name (Envoy rule 3).
type Cluster struct {
	Name string
	CLA  *endpointv3.ClusterLoadAssignment
	// Endpoints, if not nil, are the lb_endpoints of CLA's localities,
	// Endpoints[i] for CLA.Endpoints[i]; CLA's own are then not read. See
	// Endpoint.
	Endpoints [][]Endpoint
	// Release asks the Writer to keep nothing in memory for the cluster
	// once this content is on disk (written, or found there already): for
	// a cluster no longer published, whose file is emptied. The file on
	// disk is then all there is: a later Write compares with it, and the
	// folder watch no longer reports it.
	Release bool
}

// Endpoint is one lb_endpoints entry given apart from its CLA. The writer
// finds an endpoint it has encoded before by comparing Endpoint values (so
// an implementation hands out the same pointer while the endpoint does not
// change) and calls LbEndpoint, which builds its message, only for the
// others: the caller need not keep a built message per endpoint, 400 bytes
// each. HealthStatus is the message's health_status, read without building
// it.
//
// Endpoint values are compared with == and used as map keys: an
// implementation must be comparable (a pointer, as render's are).
//
// An alias of an interface literal, like render.Host: the two are one type,
// so render's output comes here without either package importing the other.
type Endpoint = interface {
	LbEndpoint() *endpointv3.LbEndpoint
	HealthStatus() corev3.HealthStatus
}

// Options configure a Writer.
type Options struct {
	// Dir is the output folder. It must exist: a mistyped path should fail
	// loudly, not create a folder that Envoy never reads.
	Dir string
	// Format of the files; empty means JSON.
	Format Format
	// Layout of the files in Dir; empty means LayoutFolders.
	Layout Layout
	// DryRun prints each file that would be written to Out instead; nothing
	// on disk is read or touched, and Dir need not exist.
	DryRun bool
	// Out receives the dry-run output; nil means os.Stdout.
	Out io.Writer
	// Logger gets per-file lines at Debug and failures at Error; nil discards.
	Logger *slog.Logger
	// Concurrency is the number of files of one batch written in parallel;
	// 0 means 8. Each file costs an fsync (~0.3 ms), which is waiting, not CPU.
	Concurrency int
	// MaxFileSize is the largest file written, in bytes; 0 means no limit.
	// A cluster whose file would be larger is not written (its old file,
	// if any, stays) and is listed in Result.TooLarge: a Service's owner
	// must not be able to fill the volume every other cluster's file is on.
	MaxFileSize int
}

// Result counts the outcome of a Write or Retry, one per distinct cluster.
type Result struct {
	Written   int // files replaced (or printed, in dry-run)
	Unchanged int // files whose bytes were already right
	Failed    int // clusters not written; Err says why
	// TooLarge lists the clusters not written because their file would be
	// over Options.MaxFileSize. Not failures: nothing is retried, and the
	// old file stays until the cluster's content fits again.
	TooLarge []TooLarge
	// WrittenClusters names the clusters counted in Written, in batch
	// order: for callers that time a change to the rename of its file.
	WrittenClusters []string
	// Kept lists, in batch order, the clusters whose files hold the
	// content given (written, or found right), with its version_info:
	// what a reader of the files (Envoy) is to report.
	Kept []Kept
	// Err joins one error per failure, each naming the file and the reason.
	// It may also carry a failed fsync of the folder after files were
	// renamed; those files count as Written.
	Err error
}

// Kept is a cluster whose file holds Version; Renamed if this batch put
// it there.
type Kept struct {
	Cluster, Version string
	Renamed          bool
}

// TooLarge is a cluster whose file would be Size bytes, over Max.
type TooLarge struct {
	Cluster   string
	Size, Max int
}

// Writer writes CLAs to files in one output folder, each in a folder of its
// own (or all in it: Layout). Its methods may be called from several
// goroutines: they run one at a time.
type Writer struct {
	dir         string
	tmpDir      string
	format      Format
	layout      Layout
	dryRun      bool
	out         io.Writer
	log         *slog.Logger
	concurrency int
	maxSize     int

	// rename is renameAt; tests swap it to make the last step fail.
	rename renameFunc

	mu  sync.Mutex
	enc *encoder
	// files holds, per cluster, what this process knows of its file: the
	// digest of its content (or of what was printed, in dry-run) and which
	// file it is. A cluster missing here is compared with the file on disk
	// by its next write: never written by this process, released, or its
	// file was removed or replaced behind our back (see Watcher).
	files map[string]fileState
	// pending holds the latest content of clusters whose last write failed.
	pending map[string]job
	// found holds the clusters whose files were in the folder at New and
	// that no Write has handled since: Known lists them for the sweep.
	found map[string]bool
	// short maps the shortened entry names (see Layout) of the clusters in
	// files or found to their clusters: such a name cannot be read back.
	short map[string]string
	// watch is the folder watch, once Watch has started it: in the
	// folders layout each cluster folder of a file in files is watched,
	// added and removed as files changes, through watchOps, which the
	// watch's Run applies. nil before Watch and in the flat layout.
	watch    *Watcher
	watchOps []folderOp
}

// fileState is what the Writer knows of one cluster's file.
type fileState struct {
	digest uint64 // the encoder's
	// id is the file renamed into place (or found right); another one at
	// the path means someone replaced it. Zero in dry-run.
	id fileIdent
}

// New checks the output folder, prepares its temp folder (removing what a
// crash left there) and lists the files of ours already in it.
func New(opts Options) (*Writer, error) {
	format := opts.Format
	if format == "" {
		format = FormatJSON
	}
	if !format.valid() {
		return nil, fmt.Errorf("writer: unknown format %q (want json, yaml or pb)", opts.Format)
	}
	layout := opts.Layout
	if layout == "" {
		layout = LayoutFolders
	}
	if !layout.valid() {
		return nil, fmt.Errorf("writer: unknown layout %q (want folders or flat)", opts.Layout)
	}
	if opts.Dir == "" && !opts.DryRun {
		return nil, errors.New("writer: no output folder given")
	}
	w := &Writer{
		dir:         opts.Dir,
		tmpDir:      filepath.Join(opts.Dir, tmpDirName),
		format:      format,
		layout:      layout,
		dryRun:      opts.DryRun,
		out:         opts.Out,
		log:         opts.Logger,
		concurrency: opts.Concurrency,
		maxSize:     max(opts.MaxFileSize, 0),
		rename:      renameAt,
		enc:         newEncoder(format),
		files:       make(map[string]fileState),
		pending:     make(map[string]job),
		found:       make(map[string]bool),
		short:       make(map[string]string),
	}
	if w.out == nil {
		w.out = os.Stdout
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "writer")
	if w.concurrency <= 0 {
		w.concurrency = 8
	}
	if w.dryRun {
		return w, nil
	}

	fi, err := os.Stat(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("writer: output folder %s: %w", opts.Dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("writer: output folder %s is not a folder", opts.Dir)
	}
	removed, err := cleanTmp(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("writer: output folder %s: %w", opts.Dir, err)
	}
	if removed > 0 {
		w.log.Info("removed leftover temp files", "dir", w.tmpDir, "count", removed)
	}
	if err := w.list(); err != nil {
		return nil, fmt.Errorf("writer: output folder %s: %w", opts.Dir, err)
	}
	return w, nil
}

// Path returns the file of cluster.
func (w *Writer) Path(cluster string) (string, error) {
	return w.layout.Path(w.dir, cluster, w.format)
}

// Encode renders the file content for one CLA: a DiscoveryResponse holding
// the CLA as its only resource, version_info a hash of the CLA's encoding.
// It fails on a CLA that does not pass ValidateAll() (Envoy rule 9).
func (w *Writer) Encode(cla *endpointv3.ClusterLoadAssignment) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, err := w.enc.encode(cla, nil)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(e.data), nil // e.data is the encoder's buffer
}

// Pending returns the number of clusters whose last write failed.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// IsPending says whether the last write of cluster failed: its file does
// not hold what was last given for it.
func (w *Writer) IsPending(cluster string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.pending[cluster]
	return ok
}

// PendingClusters returns, sorted, the clusters whose last write failed.
func (w *Writer) PendingClusters() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Sorted(maps.Keys(w.pending))
}

// job is one file to write.
type job struct {
	cluster string
	path    string
	enc     encoded
	// checkDisk: the Writer knows nothing of the file (the cluster's first
	// write in this process, or it was released or replaced), so the file
	// on disk may already hold these bytes (a restart).
	checkDisk bool
	// first: no write of this cluster has succeeded since the Writer knew
	// its file, so the target may be something other than a file of ours.
	first   bool
	release bool // Cluster.Release
}

type outcome int

const (
	failed outcome = iota
	written
	unchanged
)

// Write writes the files of clusters whose bytes changed, in parallel, each
// followed by an fsync of its folder (in the flat layout, one fsync of the
// output folder for the batch). If a cluster appears twice, the last one counts. A
// failed cluster stays pending for Retry, with the newest content given.
func (w *Writer) Write(ctx context.Context, clusters []Cluster) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	var res Result
	var errs []error
	var jobs []job
	for _, c := range lastOfEach(clusters) {
		j, err := w.prepare(c)
		if err != nil {
			// Bad content cannot get better by retrying it; the old file
			// stays, and the next Write for the cluster replaces the
			// pending content, if any.
			res.Failed++
			errs = append(errs, err)
			w.log.Error("not written; the old file stays", "cluster", c.Name, "path", j.path, "error", reason(err, j.path))
			continue
		}
		if n := len(j.enc.data); w.maxSize > 0 && n > w.maxSize {
			// Reported by the caller, which knows the Service behind it.
			// Any content pending for it is older than this: dropped, so
			// that a retry does not write it over the file.
			res.TooLarge = append(res.TooLarge, TooLarge{Cluster: c.Name, Size: n, Max: w.maxSize})
			delete(w.pending, c.Name)
			w.log.Debug("too large; not written", "cluster", c.Name, "path", j.path, "bytes", n, "max", w.maxSize)
			continue
		}
		if f, ok := w.files[c.Name]; ok && f.digest == j.enc.digest && (j.enc.same || w.dryRun || w.holds(j.path, j.enc.data)) {
			res.Unchanged++
			res.Kept = append(res.Kept, Kept{Cluster: c.Name, Version: j.enc.version})
			delete(w.pending, c.Name) // the file already holds the latest
			w.log.Debug("unchanged", "cluster", c.Name, "path", j.path, "version", j.enc.version)
			if c.Release {
				w.release(c.Name)
			}
			continue
		}
		jobs = append(jobs, j)
	}
	w.run(ctx, jobs, &res, errs)
	return res
}

// holds says whether the file at path holds data. Write asks only when a
// document's digest matches the file's but the document differs from the
// cluster's previous one: a change back to what the file holds (after a
// failed write), or a collision of the 64-bit digest, which someone who
// controls a Service's endpoints could craft; the bytes settle it.
func (w *Writer) holds(path string, data []byte) bool {
	old, _, err := w.readFile(path)
	return err == nil && bytes.Equal(old, data)
}

// Retry rewrites the pending clusters with the latest content given for them.
func (w *Writer) Retry(ctx context.Context) Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	jobs := make([]job, 0, len(w.pending))
	for _, j := range w.pending {
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b job) int { return strings.Compare(a.cluster, b.cluster) })
	var res Result
	w.run(ctx, jobs, &res, nil)
	return res
}

// lastOfEach drops all but the last occurrence of each cluster name, keeping
// the order otherwise: two workers must never write the same file at once.
func lastOfEach(clusters []Cluster) []Cluster {
	last := make(map[string]int, len(clusters))
	for i, c := range clusters {
		last[c.Name] = i
	}
	if len(last) == len(clusters) {
		return clusters
	}
	out := make([]Cluster, 0, len(last))
	for i, c := range clusters {
		if last[c.Name] == i {
			out = append(out, c)
		}
	}
	return out
}

func (w *Writer) prepare(c Cluster) (job, error) {
	j := job{cluster: c.Name}
	var err error
	if j.path, err = w.Path(c.Name); err != nil {
		return j, err
	}
	if c.CLA == nil {
		return j, fmt.Errorf("%s: no ClusterLoadAssignment", j.path)
	}
	if c.CLA.GetClusterName() != c.Name {
		// Envoy would reject it: "Unexpected EDS cluster (expecting X)".
		return j, fmt.Errorf("%s: cluster_name %q differs from cluster %q", j.path, c.CLA.GetClusterName(), c.Name)
	}
	if j.enc, err = w.enc.encode(c.CLA, c.Endpoints); err != nil {
		return j, fmt.Errorf("%s: %w", j.path, err)
	}
	_, known := w.files[c.Name]
	j.checkDisk = !known && !w.dryRun
	j.first = !known
	j.release = c.Release
	return j, nil
}
