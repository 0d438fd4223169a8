package writer

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var formats = []Format{FormatJSON, FormatYAML, FormatPB}

// newEncoding returns a dry-run Writer: Encode without a folder.
func newEncoding(t testing.TB, f Format) *Writer {
	t.Helper()
	w, err := New(Options{Format: f, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkRoundTrip parses data as Envoy would and compares with want.
func checkRoundTrip(t *testing.T, f Format, data []byte, want *endpointv3.ClusterLoadAssignment) {
	t.Helper()
	resp, got, err := parseLikeEnvoy("x"+f.Ext(), data)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", f, err, data)
	}
	if v := resp.GetVersionInfo(); len(v) != 16 {
		t.Fatalf("version_info %q: want 16 hex digits", v)
	}
	if !proto.Equal(want, got) { // cmp.Diff is slow: only to explain a failure
		t.Fatalf("%s round trip (-want +got):\n%s\n%s", f, cmp.Diff(want, got, protocmp.Transform()), data)
	}
}

// TestEncodeRoundTrip is the encoder's main proof: for random CLAs the bytes
// parse back, as Envoy parses them, to the same CLA; encoding is the same
// with a cold cache and with a warm one that encoded the cluster's earlier
// versions (sharing endpoint pointers, as render does), and encoding twice
// gives the same bytes.
func TestEncodeRoundTrip(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			g := gen{rand.New(rand.NewPCG(7, uint64(len(f))))}
			warm := newEncoding(t, f)
			for i := range 200 {
				cla := g.cla()
				if i%10 == 0 {
					cla.Endpoints = nil // a CLA that clears the hosts (Envoy rule 7)
				}
				for gen := range 5 { // versions of one cluster
					if gen > 0 {
						cla = g.mutate(cla)
					}
					cold, err := newEncoding(t, f).Encode(cla)
					if err != nil {
						t.Fatalf("cla %d.%d: %v", i, gen, err)
					}
					checkRoundTrip(t, f, cold, cla)
					for range 2 {
						hot, err := warm.Encode(cla)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(hot, cold) {
							t.Fatalf("cla %d.%d: warm cache differs from cold:\n%s\n---\n%s", i, gen, hot, cold)
						}
					}
				}
			}
		})
	}
}

func TestEncodeVersionIsContentHash(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			w := newEncoding(t, f)
			a, _ := w.Encode(smallCLA())
			b, _ := w.Encode(smallCLA()) // other pointers, same content
			if !bytes.Equal(a, b) {
				t.Fatal("same content, different bytes")
			}
			other := smallCLA()
			other.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
			c, _ := w.Encode(other)
			va, vc := version(t, f, a), version(t, f, c)
			if va == vc {
				t.Fatalf("different content, same version %s", va)
			}
			// The version is the hash of the CLA encoding, which we can
			// recompute from the encoder.
			enc, err := newEncoder(f).encode(smallCLA(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%016x", enc.digest); va != want {
				t.Fatalf("version %s, want %s", va, want)
			}
			if enc.digest == 0 || enc.digest == xxhash.Sum64(nil) {
				t.Fatal("empty digest")
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func version(t *testing.T, f Format, data []byte) string {
	t.Helper()
	resp, _, err := parseLikeEnvoy("x"+f.Ext(), data)
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVersionInfo()
}

// TestGolden pins the bytes of each format. They must not change between
// builds or processes (a change rewrites every file at the next start), so
// a diff here is a deliberate format change: rerun with -update.
func TestGolden(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			w := newEncoding(t, f)
			got, err := w.Encode(smallCLA())
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, f, got, smallCLA())
			golden(t, filepath.Join("testdata", "small"+f.Ext()), got)

			var out bytes.Buffer
			w, err = New(Options{Format: f, DryRun: true, Dir: "/etc/envoy/eds", Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			if res := w.Write(t.Context(), []Cluster{{Name: "default/web/http", CLA: smallCLA()}}); res.Written != 1 {
				t.Fatalf("dry-run: %+v", res)
			}
			golden(t, filepath.Join("testdata", "small"+f.Ext()+".dryrun"), out.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test -update to accept):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestEncodeIndependentOfDetrand feeds the JSON helpers protojson output
// with the extra spaces another build's protojson might add.
func TestEncodeIndependentOfDetrand(t *testing.T) {
	raw, err := protojson.Marshal(smallCLA().Endpoints[0].LbEndpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	spaced := bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte(":"), []byte(": ")), []byte(","), []byte(",  "))
	for _, in := range [][]byte{raw, spaced} {
		a, err := indentRaw(in, jsonEndpoint)
		if err != nil {
			t.Fatal(err)
		}
		b, err := indentRaw(raw, jsonEndpoint)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("whitespace leaks through json.Indent:\n%s\n%s", a, b)
		}
		c, err := oneLineJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		d, err := oneLineJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c, d) {
			t.Fatalf("whitespace leaks through oneLineJSON:\n%s\n%s", c, d)
		}
	}
	if got, want := must(oneLineJSON([]byte(`{ "a" :"x,y: \"z\\\\",  "b":[1 ,2]}`))), `{"a": "x,y: \"z\\\\", "b": [1, 2]}`; string(got) != want {
		t.Fatalf("oneLineJSON = %s, want %s", got, want)
	}

	// prototext puts one or two spaces after "name:", per binary.
	one := "version_info: \"x\"\nresources: {\n  [type.googleapis.com/a.B]: {\n    name: \"a:  b\"\n    e: {}\n  }\n}\n"
	two := "version_info:  \"x\"\nresources:  {\n  [type.googleapis.com/a.B]:  {\n    name:  \"a:  b\"\n    e:  {}\n  }\n}\n"
	for _, in := range []string{one, two} {
		if got := string(normalizeText([]byte(in))); got != one {
			t.Errorf("normalizeText(%q) =\n%s\nwant:\n%s", in, got, one)
		}
	}
}

// TestEncodeRejectsInvalid: content that fails ValidateAll() is never
// produced (Envoy rule 9), whether the bad field is in a cached fragment or
// in a skeleton.
func TestEncodeRejectsInvalid(t *testing.T) {
	tests := map[string]func(*endpointv3.ClusterLoadAssignment){
		"port": func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[0].LbEndpoints = append(c.Endpoints[0].LbEndpoints, lbEndpoint("10.0.0.9", 70000, "", 0))
		},
		"empty ip":    func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].LbEndpoints[0] = lbEndpoint("", 80, "", 0) },
		"priority":    func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].Priority = 129 },
		"no name":     func(c *endpointv3.ClusterLoadAssignment) { c.ClusterName = "" },
		"nil lb":      func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].LbEndpoints[1] = nil },
		"nil lle":     func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[2] = nil },
		"zero factor": func(c *endpointv3.ClusterLoadAssignment) { c.Policy.OverprovisioningFactor.Value = 0 },
	}
	for name, mutate := range tests {
		for _, f := range formats {
			t.Run(name+"/"+string(f), func(t *testing.T) {
				cla := smallCLA()
				mutate(cla)
				if data, err := newEncoding(t, f).Encode(cla); err == nil {
					t.Fatalf("no error; encoded:\n%s", data)
				}
			})
		}
	}
}

// TestEncodeFindsEndpointsAgain: an endpoint already encoded in its
// cluster's previous document is copied from it, not encoded again, whether
// it is in step, far ahead (many removed before it) or moved (past the few
// encoded again before the walk indexes the document); a new one is
// encoded; a busy cluster does not make a quiet one's endpoints be encoded
// again. Every document equals a fresh encoder's.
func TestEncodeFindsEndpointsAgain(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(3, 4))}
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			w := newEncoding(t, f)
			encode := func(cla *endpointv3.ClusterLoadAssignment, wantEncoded int) {
				t.Helper()
				before := w.enc.fragments
				got, err := w.Encode(cla)
				if err != nil {
					t.Fatal(err)
				}
				if n := w.enc.fragments - before; n != wantEncoded {
					t.Errorf("%d endpoints encoded, want %d", n, wantEncoded)
				}
				want, err := newEncoding(t, f).Encode(cla)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("differs from a fresh encoding:\n%s\nwant:\n%s", got, want)
				}
			}
			withLbs := func(name string, lbs []*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
				return &endpointv3.ClusterLoadAssignment{ClusterName: name,
					Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
			}
			lbs := make([]*endpointv3.LbEndpoint, 500)
			for i := range lbs {
				lbs[i] = g.lbEndpoint()
			}
			quiet := withLbs("quiet", lbs[:50])
			encode(quiet, 50)
			encode(withLbs("big", lbs), 500)
			// Far ahead of the walk: the first few are encoded again, until
			// the walk indexes the previous document.
			encode(withLbs("big", lbs[100:]), indexAfter)
			encode(withLbs("big", lbs[:300]), 100) // not in the previous document
			reversed := slices.Clone(lbs[:300])
			slices.Reverse(reversed)
			encode(withLbs("big", reversed), indexAfter)
			fresh := slices.Insert(slices.Clone(reversed), 150, g.lbEndpoint())
			encode(withLbs("big", fresh), 1)
			for range 20 {
				busy := make([]*endpointv3.LbEndpoint, 100)
				for i := range busy {
					busy[i] = g.lbEndpoint()
				}
				encode(withLbs("busy", busy), 100)
			}
			encode(withLbs("quiet", slices.Clone(quiet.Endpoints[0].LbEndpoints)), 0)
		})
	}
}

// TestSmallClusterKeepsNoDocument: in pb, a cluster of fewer than
// pbHistoryFrom endpoints keeps two hashes and no document, and is encoded
// whole each time, to the same bytes as a fresh encoder's; an encoding equal
// to its last one is known as such, and one that differs is not; what it
// returned stays valid after further encodes (its own copy). A cluster that
// grows past the size keeps its document, and drops it once it shrinks.
// JSON and YAML keep the document of every cluster.
func TestSmallClusterKeepsNoDocument(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(5, 6))}
	lbs := make([]*endpointv3.LbEndpoint, pbHistoryFrom+4)
	for i := range lbs {
		lbs[i] = g.lbEndpoint()
	}
	cla := func(lbs []*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
		return &endpointv3.ClusterLoadAssignment{ClusterName: "small",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
	}
	e := newEncoder(FormatPB)
	step := func(lbs []*endpointv3.LbEndpoint, wantSame, wantDocument bool) []byte {
		t.Helper()
		got, err := e.encode(cla(lbs), nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newEncoder(FormatPB).encode(cla(lbs), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, want.data) || got.version != want.version {
			t.Fatalf("%d endpoints: differs from a fresh encoding", len(lbs))
		}
		if got.same != wantSame {
			t.Errorf("%d endpoints: same = %v, want %v", len(lbs), got.same, wantSame)
		}
		_, document := e.clusters["small"]
		_, hashes := e.small["small"]
		if document != wantDocument || hashes == wantDocument {
			t.Errorf("%d endpoints: document kept %v, hashes kept %v; want a document %v", len(lbs), document, hashes, wantDocument)
		}
		return got.data
	}
	first := step(lbs[:10], false, false)
	kept := bytes.Clone(first)
	step(slices.Clone(lbs[:10]), true, false)
	changed := slices.Clone(lbs[:10])
	changed[3] = g.lbEndpoint()
	step(changed, false, false)
	step(changed, true, false)
	if !bytes.Equal(first, kept) {
		t.Error("an earlier result was overwritten by a later encode")
	}
	step(lbs, false, true) // past the size
	step(lbs, true, true)
	step(lbs[:10], false, false) // shrunk
	e.forget("small")
	if len(e.clusters)+len(e.small) != 0 {
		t.Errorf("forget left %d documents and %d hashes", len(e.clusters), len(e.small))
	}
	step(lbs[:10], false, false) // nothing of before

	for _, f := range []Format{FormatJSON, FormatYAML} {
		e := newEncoder(f)
		if _, err := e.encode(cla(lbs[:2]), nil); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.clusters["small"]; !ok || len(e.small) != 0 {
			t.Errorf("%s: a small cluster's document is not kept", f)
		}
	}
}
