package watch

import (
	"testing"

	"github.com/edsync/edsync/internal/benchdata"
)

// benchManifestJSON is one file of the manifest workload.
func benchManifestJSON(b *testing.B, file int, shape benchdata.Shape) []byte {
	data, err := benchdata.ManifestList(file, shape)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeManifest decodes one file of the manifest workload, per
// shape: per op, 100 slices of 10 endpoints from a JSON List of 470 KB
// (plain) or 840 KB (as the EndpointSlice controller writes them).
func BenchmarkDecodeManifest(b *testing.B) {
	for _, shape := range benchdata.Shapes {
		b.Run(shape.String(), func(b *testing.B) {
			data := benchManifestJSON(b, 0, shape)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := decodeManifest(data)
				if err != nil || len(m.slices) != 100 {
					b.Fatal(len(m.slices), err)
				}
			}
		})
	}
}
