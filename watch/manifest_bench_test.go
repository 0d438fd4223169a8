package watch

import (
	"testing"

	"github.com/edsync/edsync/internal/benchdata"
)

// benchManifestJSON is one file of the manifest workload.
func benchManifestJSON(b *testing.B, file int) []byte {
	data, err := benchdata.ManifestList(file)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeManifest decodes one file of the manifest workload: per
// op, 100 slices of 10 endpoints from a 250 KB JSON List.
func BenchmarkDecodeManifest(b *testing.B) {
	data := benchManifestJSON(b, 0)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := decodeManifest(data)
		if err != nil || len(m.slices) != 100 {
			b.Fatal(len(m.slices), err)
		}
	}
}
