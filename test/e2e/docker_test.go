package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edsync/edsync/test/e2e/harness"
)

// repoRoot is the edsync repository these tests read from.
func repoRoot(t *testing.T) string {
	t.Helper()
	repo, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// dockerfileLine returns the Dockerfile's one line that starts with prefix.
func dockerfileLine(t *testing.T, prefix string) string {
	t.Helper()
	found := dockerfileLines(t, prefix)
	if len(found) != 1 {
		t.Fatalf("Dockerfile: %d lines start with %q, want 1", len(found), prefix)
	}
	return found[0]
}

// TestImage builds the image without a Docker engine, as the Dockerfile
// says: the binary with the Dockerfile's own build line, then an OCI image
// layout holding it where the final stage's COPY puts it, with the final
// stage's USER, ENTRYPOINT and EXPOSE, and every timestamp from
// SOURCE_DATE_EPOCH. It checks that
//
//   - the binary is static, as the distroless base (no libc, no loader)
//     needs, and carries the version given;
//   - two builds from two copies of the source at different paths give the
//     same bytes (-trimpath), and two layouts made from them the same
//     manifest digest: the image is reproducible;
//   - every base image is pinned by digest, and USER is numeric and not
//     root;
//   - the image's entrypoint, run from its unpacked layer as its user, with
//     no environment, from an empty folder, prints the files of the example
//     manifests (when the test runs as root, which switching users needs).
//
// It lives here, not beside main.go, because -trimpath makes it compile
// every package again: on a cold, busy machine that alone outlasted the
// unit tests' default 10-minute timeout.
func TestImage(t *testing.T) {
	repo := repoRoot(t)
	if runtime.GOOS != "linux" {
		t.Skip("the image is Linux")
	}
	stage := finalStage(t)
	for _, from := range dockerfileLines(t, "FROM ") {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}( |$)`).MatchString(from) {
			t.Errorf("Dockerfile %q: the base image is not pinned by digest", from)
		}
	}
	uid, gid := stage.userIDs(t)

	// The source copied elsewhere, as a builder's checkout would be.
	dir, err := os.MkdirTemp("", "edsync-image-") // not t.TempDir: its parent is 0700, see below
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "elsewhere", "src")
	if out, err := exec.Command("sh", "-c", `mkdir -p "$1" && git -C "$2" ls-files -z | (cd "$2" && xargs -0 cp --parents -t "$1")`, "sh", other, repo).CombinedOutput(); err != nil {
		t.Fatalf("copying the sources: %v\n%s", err, out)
	}
	a := buildStatic(t, repo, filepath.Join(dir, "a"))
	b := buildStatic(t, other, filepath.Join(dir, "b"))
	if !sameFile(t, a, b) {
		t.Error("two builds of the same sources at different paths differ: the binary is not reproducible")
	}
	checkStatic(t, a)

	const epoch = 1767225600 // 2026-01-01, a SOURCE_DATE_EPOCH
	layoutA, digestA := ociLayout(t, a, stage, epoch, filepath.Join(dir, "layout-a"))
	_, digestB := ociLayout(t, b, stage, epoch, filepath.Join(dir, "layout-b"))
	if digestA != digestB {
		t.Errorf("the image layouts of the two builds differ: %s, %s", digestA, digestB)
	}

	// The image as a runtime would start it: its layer unpacked, its
	// config's entrypoint and user.
	rootfs := filepath.Join(dir, "rootfs")
	cfg := unpackLayout(t, layoutA, rootfs)
	if cfg.Config.User != fmt.Sprintf("%d:%d", uid, gid) || !slices.Equal(cfg.Config.Entrypoint, stage.entrypoint) {
		t.Errorf("image config user %q, entrypoint %q: want the Dockerfile's", cfg.Config.User, cfg.Config.Entrypoint)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: not running the image's entrypoint as its user")
		return
	}
	manifests := filepath.Join(dir, "manifests")
	empty := filepath.Join(dir, "cwd")
	for _, d := range []string{manifests, empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(repo, "examples", "endpointslices"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(repo, "examples", "endpointslices", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(manifests, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := slices.Concat(cfg.Config.Entrypoint[1:], []string{"--from-dir", manifests, "--dry-run", "--once", "--output-dir", "/var/run/edsync"})
	run := exec.CommandContext(t.Context(), filepath.Join(rootfs, cfg.Config.Entrypoint[0]), args...)
	run.Dir = empty
	run.Env = []string{}
	run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("the entrypoint as %s: %v\n%s", cfg.Config.User, err, stderr.String())
	}
	want, err := os.ReadFile(filepath.Join(repo, "testdata", "examples-dry-run.json.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("the entrypoint as %s printed:\n%s\nwant testdata/examples-dry-run.json.txt:\n%s", cfg.Config.User, stdout.String(), want)
	}
	if left, _ := os.ReadDir(empty); len(left) > 0 {
		t.Errorf("edsync wrote into its working folder: %v", left)
	}
}

// buildStatic runs the Dockerfile's build line (by sh, as Docker's shell
// form does) in src, writing the binary into out instead of /out.
func buildStatic(t *testing.T, src, out string) string {
	t.Helper()
	build, ok := strings.CutPrefix(dockerfileLine(t, "RUN CGO_ENABLED=0 "), "RUN ")
	if !ok || !strings.Contains(build, " -o /out/edsync ") || !strings.Contains(build, "-trimpath") {
		t.Fatalf("build line %q: want RUN ... -trimpath ... -o /out/edsync .", build)
	}
	bin := filepath.Join(out, "edsync")
	cmd := exec.CommandContext(t.Context(), "sh", "-c", strings.Replace(build, " -o /out/edsync ", " -o "+bin+" ", 1))
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "VERSION=static-test", "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	return bin
}

// checkStatic: no program interpreter, no shared library, and the version
// the build line was given.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a program interpreter (PT_INTERP): it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries (DT_NEEDED) %q (%v)", libs, err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "--version").Output(); err != nil || string(out) != "edsync version static-test\n" {
		t.Errorf("--version: %q (%v): the Dockerfile's -X main.version did not take", out, err)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(da, db)
}

// dockerfileLines returns the Dockerfile's lines that start with prefix.
func dockerfileLines(t *testing.T, prefix string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, prefix) {
			found = append(found, strings.TrimSpace(line))
		}
	}
	return found
}

// stage is what the Dockerfile's final stage makes of the binary.
type stage struct {
	path       string   // where COPY --from=build puts it
	user       string   // USER
	entrypoint []string // ENTRYPOINT, exec form
	ports      []string // EXPOSE
}

// finalStage reads the instructions after the Dockerfile's last FROM.
func finalStage(t *testing.T) stage {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	text = text[strings.LastIndex(text, "\nFROM ")+1:]
	var st stage
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "COPY":
			if len(f) == 4 && f[1] == "--from=build" && f[2] == "/out/edsync" {
				st.path = f[3]
			}
		case "USER":
			st.user = f[1]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "ENTRYPOINT")), &st.entrypoint); err != nil {
				t.Fatalf("Dockerfile %q: want the exec form: %v", strings.TrimSpace(line), err)
			}
		case "EXPOSE":
			st.ports = append(st.ports, f[1:]...)
		}
	}
	if st.path == "" || st.user == "" || len(st.entrypoint) == 0 || st.entrypoint[0] != st.path {
		t.Fatalf("Dockerfile's final stage: %+v: want COPY --from=build /out/edsync PATH, USER, and ENTRYPOINT [PATH, ...]", st)
	}
	return st
}

// userIDs is USER as numbers: a name would need the base's /etc/passwd,
// and root is refused.
func (st stage) userIDs(t *testing.T) (uid, gid uint32) {
	t.Helper()
	u, g, _ := strings.Cut(st.user, ":")
	uid64, err1 := strconv.ParseUint(u, 10, 32)
	gid64, err2 := strconv.ParseUint(g, 10, 32)
	if err1 != nil || err2 != nil || uid64 == 0 || gid64 == 0 {
		t.Fatalf("Dockerfile USER %q: want a numeric non-root uid:gid", st.user)
	}
	return uint32(uid64), uint32(gid64)
}

// The OCI image format's documents, the fields written here.
type (
	ociDescriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    *ociPlatform      `json:"platform,omitempty"`
	}
	ociPlatform struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	}
	ociIndex struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     []ociDescriptor `json:"manifests"`
	}
	ociManifest struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        ociDescriptor   `json:"config"`
		Layers        []ociDescriptor `json:"layers"`
	}
	ociConfig struct {
		Created      string `json:"created"`
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User         string              `json:"User"`
			Entrypoint   []string            `json:"Entrypoint"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
)

// ociLayout writes an OCI image layout into dir: one layer holding the
// binary at the stage's path (root-owned, 0755, its folders 0755), every
// timestamp epoch, gzip with no name or time, and the stage's user,
// entrypoint and ports. It returns dir and the manifest's digest.
func ociLayout(t *testing.T, bin string, st stage, epoch int64, dir string) (string, string) {
	t.Helper()
	mtime := time.Unix(epoch, 0).UTC()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	parts := strings.Split(strings.Trim(st.path, "/"), "/")
	for i := range parts[:len(parts)-1] {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.Join(parts[:i+1], "/") + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.Join(parts, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	zw, err := gzip.NewWriterLevel(&layer, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarball.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	blob := func(mediaType string, content []byte) ociDescriptor {
		sum := sha256.Sum256(content)
		d := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d), content, 0o644); err != nil {
			t.Fatal(err)
		}
		return ociDescriptor{MediaType: mediaType, Digest: "sha256:" + d, Size: int64(len(content))}
	}
	marshal := func(v any) []byte {
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	var cfg ociConfig
	cfg.Created = mtime.Format(time.RFC3339)
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.User, cfg.Config.Entrypoint = st.user, st.entrypoint
	for _, p := range st.ports {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if cfg.Config.ExposedPorts == nil {
			cfg.Config.ExposedPorts = map[string]struct{}{}
		}
		cfg.Config.ExposedPorts[p] = struct{}{}
	}
	diff := sha256.Sum256(tarball.Bytes())
	cfg.RootFS.Type, cfg.RootFS.DiffIDs = "layers", []string{"sha256:" + hex.EncodeToString(diff[:])}
	manifest := ociManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: blob("application/vnd.oci.image.config.v1+json", marshal(cfg)),
		Layers: []ociDescriptor{blob("application/vnd.oci.image.layer.v1.tar+gzip", layer.Bytes())}}
	m := blob("application/vnd.oci.image.manifest.v1+json", marshal(manifest))
	m.Platform = &ociPlatform{Architecture: runtime.GOARCH, OS: "linux"}
	m.Annotations = map[string]string{"org.opencontainers.image.ref.name": "edsync"}
	index := ociIndex{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []ociDescriptor{m}}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), marshal(index), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, m.Digest
}

// unpackLayout reads the layout's one image as a runtime would (index,
// manifest, config, each blob checked against its digest) and unpacks its
// layers into rootfs; it returns the config.
func unpackLayout(t *testing.T, dir, rootfs string) ociConfig {
	t.Helper()
	read := func(d ociDescriptor) []byte {
		hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
		if !ok {
			t.Fatalf("digest %q: want sha256", d.Digest)
		}
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", hexDigest))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexDigest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s does not match its descriptor", d.Digest)
		}
		return data
	}
	var index ociIndex
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || json.Unmarshal(data, &index) != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, data)
	}
	var manifest ociManifest
	if err := json.Unmarshal(read(index.Manifests[0]), &manifest); err != nil {
		t.Fatal(err)
	}
	var cfg ociConfig
	if err := json.Unmarshal(read(manifest.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(read(l)))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(rootfs, filepath.FromSlash(hdr.Name))
			if !strings.HasPrefix(path, rootfs+string(filepath.Separator)) {
				t.Fatalf("layer entry %q leaves the root", hdr.Name)
			}
			switch hdr.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(path, os.FileMode(hdr.Mode)&0o777); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				content, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, content, os.FileMode(hdr.Mode)&0o777); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("layer entry %q: type %c is not written by ociLayout", hdr.Name, hdr.Typeflag)
			}
		}
	}
	return cfg
}
