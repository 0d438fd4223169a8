package writer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/edsync/edsync/internal/testutil"
)

// testCluster is an EDS cluster reading path, as edsync makes them; h2
// adds HTTP/2 upstream options (an Any inside the cluster, which the encoder
// must expand).
func testCluster(name, path string, h2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion:    corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: path}},
			},
		},
	}
	if h2 {
		opts, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			},
		}})
		if err != nil {
			panic(err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}
	}
	return c
}

// The CDS file parses as Envoy parses it, in each format: one
// DiscoveryResponse, every resource a valid Cluster with what was given
// (nested Anys included), a version that follows the content.
func TestCDSFileParsesAsEnvoy(t *testing.T) {
	for _, ext := range []string{".json", ".yaml", ".yml", ".pb"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cds"+ext)
			c, err := NewCDS(CDSOptions{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			want := []*clusterv3.Cluster{
				testCluster("default/api/grpc", filepath.Join(dir, "default_api_grpc.json"), true),
				testCluster("default/web/http 'quoted' \"name\" ünïcode", filepath.Join(dir, "web.json"), false),
			}
			if written, err := c.Write(want); err != nil || !written {
				t.Fatalf("Write = %v, %v; want written", written, err)
			}
			got, v1 := testutil.ReadCDSAsEnvoy(t, path)
			if len(got) != len(want) {
				t.Fatalf("%d clusters, want %d", len(got), len(want))
			}
			for _, w := range want {
				if !proto.Equal(got[w.Name], w) {
					t.Errorf("cluster %q:\n got %v\nwant %v", w.Name, got[w.Name], w)
				}
			}
			if v1 == "" {
				t.Error("no version_info")
			}

			if written, err := c.Write(want[:1]); err != nil || !written {
				t.Fatalf("Write of one cluster = %v, %v; want written", written, err)
			}
			got, v2 := testutil.ReadCDSAsEnvoy(t, path)
			if len(got) != 1 || got[want[0].Name] == nil || v2 == v1 {
				t.Errorf("after removing a cluster: %d clusters, version %s (was %s)", len(got), v2, v1)
			}

			// No cluster at all is a valid file: Envoy removes them all.
			if _, err := c.Write(nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := testutil.ReadCDSAsEnvoy(t, path); len(got) != 0 {
				t.Errorf("empty set: %d clusters in the file", len(got))
			}
		})
	}
}

// Content already on disk is not written again: not by the same writer,
// not by a new one finding the file of a previous run; a file removed or
// replaced behind its back is.
func TestCDSSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cds.json")
	clusters := []*clusterv3.Cluster{testCluster("a", filepath.Join(dir, "a.json"), false)}
	write := func(c *CDS, want bool, step string) {
		t.Helper()
		written, err := c.Write(clusters)
		if err != nil || written != want {
			t.Fatalf("%s: Write = %v, %v; want written=%v", step, written, err, want)
		}
	}
	c, err := NewCDS(CDSOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	write(c, true, "first write")
	ino := inode(t, path)
	write(c, false, "same clusters")

	again, err := NewCDS(CDSOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	write(again, false, "a restart finding the same content")
	if inode(t, path) != ino {
		t.Error("the file was replaced though its content was right")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(again, true, "after the file was removed")
	if err := os.WriteFile(path+".new", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	write(again, true, "after the file was replaced")
	testutil.ReadCDSAsEnvoy(t, path)
}

// A set Envoy would reject whole (an invalid cluster, two of one name) is
// an error, and the file on disk stays as it was.
func TestCDSRefusesWhatEnvoyRejects(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cds.yaml")
	c, err := NewCDS(CDSOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	good := testCluster("a", filepath.Join(dir, "a.json"), false)
	if _, err := c.Write([]*clusterv3.Cluster{good}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	invalid := testCluster("b", filepath.Join(dir, "b.json"), false)
	invalid.ConnectTimeout = durationpb.New(-1)
	for name, set := range map[string][]*clusterv3.Cluster{
		"invalid cluster": {good, invalid},
		"two of one name": {good, testCluster("a", filepath.Join(dir, "other.json"), false)},
	} {
		written, err := c.Write(set)
		if err == nil || written {
			t.Errorf("%s: Write = %v, %v; want an error", name, written, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Errorf("%s: the file changed", name)
		}
	}
}

func TestCDSFormatByExtension(t *testing.T) {
	for path, want := range map[string]Format{"/x/cds.json": FormatJSON, "/x/cds.YAML": FormatYAML, "/x/cds.yml": FormatYAML, "/x/cds.pb": FormatPB} {
		if f, err := CDSFormat(path); err != nil || f != want {
			t.Errorf("CDSFormat(%s) = %v, %v; want %v", path, f, err, want)
		}
	}
	for _, path := range []string{"/x/cds", "/x/cds.txt", "/x/cds.pb_text"} {
		if _, err := NewCDS(CDSOptions{Path: path, DryRun: true}); err == nil || !strings.Contains(err.Error(), "extension") {
			t.Errorf("NewCDS(%s): %v, want an error about the extension", path, err)
		}
	}
}

// In dry-run, the file is printed instead, and only when it changes.
func TestCDSDryRun(t *testing.T) {
	var out bytes.Buffer
	path := filepath.Join(t.TempDir(), "missing", "cds.json")
	c, err := NewCDS(CDSOptions{Path: path, DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	clusters := []*clusterv3.Cluster{testCluster("a", "/eds/a.json", false)}
	for i, want := range []bool{true, false} {
		written, err := c.Write(clusters)
		if err != nil || written != want {
			t.Fatalf("write %d: %v, %v; want %v", i, written, err, want)
		}
	}
	if !strings.HasPrefix(out.String(), "# "+path+"\n{") || strings.Count(out.String(), "# ") != 1 {
		t.Errorf("dry-run output:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("dry-run touched the disk: %v", err)
	}
}

// inode identifies the file at path, to tell a rename from no write.
func inode(t *testing.T, path string) fileIdent {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return identOf(fi)
}

// BenchmarkCDSWrite is one write of a CDS file of 10,000 clusters (one per
// Service of W1), the cost each --cds-debounce period under churn.
func BenchmarkCDSWrite(b *testing.B) {
	for _, ext := range []string{".json", ".pb"} {
		b.Run(ext[1:], func(b *testing.B) {
			dir := b.TempDir()
			clusters := make([]*clusterv3.Cluster, 10_000)
			for i := range clusters {
				name := fmt.Sprintf("bench/svc-%05d/http", i)
				clusters[i] = testCluster(name, filepath.Join(dir, name+".json"), i%10 == 0) // a tenth with HTTP/2
			}
			c, err := NewCDS(CDSOptions{Path: filepath.Join(dir, "cds+clusters"+ext)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// A different cluster each time, as a Service comes.
				clusters[i%len(clusters)].ConnectTimeout = durationpb.New(time.Duration(i%1000+1) * time.Millisecond)
				if written, err := c.Write(clusters); err != nil || !written {
					b.Fatal(written, err)
				}
			}
		})
	}
}

// The CDS file's folder may be another than the output folder: what a
// crash left of its temp files is removed at start, and nothing else in
// its .tmp/ (another program's, or another CDS file's).
func TestCDSCleansItsTempFiles(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, ".tmp")
	for _, name := range []string{"cds+clusters.json.abc123", "cds+clusters.json.x", "other.json.abc123", "notes"} {
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewCDS(CDSOptions{Path: filepath.Join(dir, "cds+clusters.json")}); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"notes", "other.json.abc123"}) {
		t.Errorf(".tmp holds %v, want the others' entries only", left)
	}
}
