package writer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math"

	"github.com/cespare/xxhash/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The encoder turns CLAs into file content, in time proportional to what
// changed since the cluster's last CLA rather than to its size.
//
// Render hands us the same Endpoint value (an immutable pointer) for an
// endpoint that did not change. So:
//
//   - each endpoint's message is built and encoded once, as a fragment
//     (validated at the same time: no CLA rule spans several endpoints), and
//     the endpoint is found again by identity in its cluster's previous
//     document, the only copy kept;
//   - the document is assembled around the fragments: every message other
//     than the endpoints (the CLA without its endpoints, each locality without
//     its lb_endpoints, the "skeletons") is encoded whole each time, and the
//     repeated fields are appended after it. Field order in a message means
//     nothing to any of the three parsers, so the result parses to the CLA;
//   - a cluster's next CLA holds mostly the same pointers in the same order,
//     so the encoder walks along the cluster's previous endpoints (one
//     pointer comparison each, no hash lookup) and copies each run of
//     unchanged endpoints from the previous document in one piece: 10,000
//     small copies from all over the heap cost more than the rest together.
//     An endpoint out of step (many removed before it, or moved) is looked
//     up in an index of the previous document, built at most once per encode.
//
// There is no cache of fragments besides the documents: one would hold a
// second copy of every endpoint's bytes plus a map entry (100 to 200 bytes
// per endpoint, a fifth of the process's heap) to save re-encoding only the
// endpoints that move from one cluster to another, which render never does.
//
// In pb, a cluster of fewer than pbHistoryFrom endpoints keeps no document:
// encoding it whole again costs a few microseconds, while its document,
// endpoints and spans (twice, once it has changed: the spare arrays) would be
// most of what the writer holds for it, and most Services of a cluster are
// that small. Of such a cluster the encoder keeps two hashes of its last
// encoding, to tell an encoding that brings nothing new. JSON and YAML keep
// every cluster's document: protojson takes ten times as long per endpoint,
// and re-encoding a 10-endpoint cluster whole tripled its encode.
//
// The encoder is not safe for concurrent use; the Writer serialises calls.
type encoder struct {
	format Format
	// clusters holds the last document of each cluster, but for the
	// small ones of pb (see pbHistoryFrom), of which small holds hashes.
	clusters map[string]*history
	small    map[string]sums
	// scratch is the arrays a small cluster's encode is built in.
	scratch history
	seed    maphash.Seed
	pieces  []piece // scratch for one locality
	// frags holds the pb fragments of one encode, back to back: one
	// buffer rather than an allocation per new endpoint.
	frags []byte
	// fragments counts the endpoints encoded (not found in a previous
	// document), for tests.
	fragments int
}

// pbHistoryFrom is the size from which a cluster keeps its last pb
// document. Below it, re-encoding the cluster whole costs under 1 µs more
// per endpoint than copying from the document (BenchmarkEncode pb/10
// warm1pct: 17 µs against 10 µs, measured before appendLbEndpoint, which
// brought a whole encode to 13 µs), and keeping the document costs 60 to
// 90 bytes per endpoint plus 200 per cluster.
const pbHistoryFrom = 16

// maxScratch bounds the scratch buffer kept between encodes.
const maxScratch = 1 << 20

// sums identifies a small cluster's last encoding: its digest, and a hash
// seeded per process, which someone crafting endpoints to collide with the
// digest (xxHash is not made to resist that) cannot aim at.
type sums struct{ digest, check uint64 }

// resyncWindow is how far ahead in a cluster's previous endpoints the walk
// looks for one that is out of step (several removed before it).
const resyncWindow = 32

// headRoom is reserved before the CLA encoding for the document head
// (version_info and the wrapping of the resource), written last because it
// depends on the CLA's hash and length. The longest head is about 160 bytes.
const headRoom = 256

// history is one cluster's last document and where each endpoint's piece
// (pb: the whole lb_endpoints field; JSON/YAML: its text) sits in it.
type history struct {
	// buf holds the document from offset base of the buffer it was built
	// in: the spans are offsets in that buffer.
	buf    []byte
	base   int
	body   []byte // the CLA's encoding, in buf
	digest uint64
	lbs    []Endpoint
	spans  []span
	// The arrays of the document before, reused for the next one.
	spareBuf   []byte
	spareLbs   []Endpoint
	spareSpans []span
}

// span is where an endpoint's piece sits in a document: 32-bit offsets, 8
// bytes per endpoint kept rather than 16 (encode refuses a document of 4 GiB
// or more, which no Envoy would load anyway).
type span struct{ off, n uint32 }

func spanOf(off, n int) span { return span{uint32(off), uint32(n)} }

// piece is one endpoint's bytes in the document being built: piece prev of
// the previous document, or (prev < 0) the fragment frag.
type piece struct {
	prev int
	frag []byte
}

// walk is the state of one encode.
type walk struct {
	prev  *history
	j     int // next endpoint expected in prev.lbs
	lbs   []Endpoint
	spans []span
	// misses counts the endpoints in a row not found near j: new ones, or
	// the walk is out of step for good (many endpoints removed at j).
	misses int
	// index maps prev's endpoints to their place in prev.lbs, built once
	// misses reaches indexAfter.
	index map[Endpoint]int
}

// indexAfter is how many endpoints in a row the walk fails to find near j
// before it indexes the previous document. A new endpoint is missed too, and
// one every event is the common case: indexing 10,000 endpoints for it would
// cost more than all the rest; re-encoding a few endpoints that were in fact
// further ahead costs little.
const indexAfter = 8

func newEncoder(f Format) *encoder {
	return &encoder{
		format:   f,
		clusters: make(map[string]*history),
		small:    make(map[string]sums),
		seed:     maphash.MakeSeed(),
	}
}

// forget drops what the encoder keeps of cluster.
func (e *encoder) forget(cluster string) {
	delete(e.clusters, cluster)
	delete(e.small, cluster)
}

// encoded is one file's content.
type encoded struct {
	// data is valid until the cluster's next encode but one: it lives in
	// the cluster's history buffers (a small pb cluster's is a copy of its
	// own). Callers that keep it longer copy it.
	data    []byte
	version string
	// digest is the 64-bit xxHash of the CLA's encoding. The file is a pure
	// function of that encoding (the version is the digest too), so equal
	// digests mean equal file bytes but for a collision: the Writer compares
	// digests, and settles a match with same, or with the file itself (see
	// Write). Not SHA-256: hashing a big Service's document took a sixth of
	// its event (0.1 ms for 10,000 endpoints in pb, 0.5 ms in JSON), xxHash
	// takes a twentieth of that.
	digest uint64
	// same: the encoding is byte for byte the cluster's previous one.
	same bool
}

// versionOf is a document's version_info: its digest in 16 hex digits.
func versionOf(d uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], d)
	return hex.EncodeToString(b[:])
}

// encode encodes cla, whose localities' lb_endpoints are eps[i] (nil: the
// CLA's own).
func (e *encoder) encode(cla *endpointv3.ClusterLoadAssignment, eps [][]Endpoint) (encoded, error) {
	if cla == nil {
		return encoded{}, errors.New("nil ClusterLoadAssignment")
	}
	if eps == nil {
		eps = givenEndpoints(cla)
	} else if len(eps) != len(cla.GetEndpoints()) {
		return encoded{}, fmt.Errorf("endpoints for %d localities, the CLA has %d", len(eps), len(cla.GetEndpoints()))
	}
	name := cla.GetClusterName()
	n := countEndpoints(eps)
	e.frags = e.frags[:0]
	defer func() {
		if cap(e.frags) > maxScratch {
			e.frags = nil
		}
	}()
	keep := n >= pbHistoryFrom || e.format != FormatPB
	h := &e.scratch // no previous document, and arrays of no one's
	if keep {
		if h = e.clusters[name]; h == nil {
			h = &history{}
		}
	}
	w := &walk{prev: h, lbs: h.spareLbs[:0], spans: h.spareSpans[:0]}
	if w.lbs == nil {
		// Sized once rather than grown by doubling: they are kept.
		w.lbs, w.spans = make([]Endpoint, 0, n), make([]span, 0, n)
	}
	buf := h.spareBuf[:0]
	if cap(buf) < headRoom {
		buf = make([]byte, 0, headRoom+len(h.buf))
	}
	buf = buf[:headRoom]
	var err error
	switch e.format {
	case FormatPB:
		buf, err = e.appendPB(buf, w, cla, eps)
	case FormatYAML:
		buf, err = e.appendYAML(buf, w, cla, eps)
	default:
		buf, err = e.appendJSON(buf, w, cla, eps)
	}
	if err != nil {
		return encoded{}, err
	}
	if len(buf) >= math.MaxUint32-len(jsonTail) {
		return encoded{}, fmt.Errorf("document of %d bytes: 4 GiB or more", len(buf))
	}
	body := buf[headRoom:]
	out := encoded{digest: h.digest}
	var check uint64
	if keep {
		// Comparing costs a tenth of hashing: worth it for the many
		// Writes (resyncs, restarts) that bring nothing new.
		out.same = h.body != nil && bytes.Equal(body, h.body)
	} else {
		check = maphash.Bytes(e.seed, body)
	}
	if !out.same {
		out.digest = xxhash.Sum64(body)
	}
	if !keep {
		prev, ok := e.small[name]
		out.same = ok && prev == sums{out.digest, check}
	}
	out.version = versionOf(out.digest)
	var head []byte
	switch e.format {
	case FormatPB:
		head = pbHead(out.version, len(body))
	case FormatYAML:
		head = yamlHead(out.version)
	default:
		head = jsonHead(out.version, len(body))
		buf = append(buf, jsonTail...)
	}
	start := headRoom - len(head)
	copy(buf[start:], head)
	if !keep {
		// Its own copy, for as long as the caller keeps it; the arrays
		// stay for the next small cluster, holding no endpoint.
		out.data = bytes.Clone(buf[start:])
		clear(w.lbs)
		e.scratch = history{spareBuf: buf, spareLbs: w.lbs, spareSpans: w.spans}
		if cap(buf) > maxScratch {
			e.scratch = history{}
		}
		delete(e.clusters, name) // it was bigger
		e.small[name] = sums{out.digest, check}
		return out, nil
	}
	delete(e.small, name) // it was smaller
	base := 0
	if cap(buf)-len(buf) > len(buf)/4 || start > len(buf)/16 {
		// Grown by doubling, up to half of it unused, or a small document
		// whose room left before the head (100 to 200 bytes, as much as
		// ten endpoints in pb) is a sizeable part of it: it is kept as
		// the history, and a big output folder holds one per cluster.
		buf, base = bytes.Clone(buf[start:]), start
	}
	out.data = buf[start-base:]

	// This document becomes the history; the previous one the spare.
	clear(h.lbs) // let dead endpoints go
	h.spareBuf, h.spareLbs, h.spareSpans = h.buf, h.lbs, h.spans
	h.buf, h.base, h.lbs, h.spans = buf, base, w.lbs, w.spans
	if cap(h.spareBuf) > 4*cap(buf) {
		// The cluster shrank (a Service scaled down or gone): do not keep
		// its old size around until its next change.
		h.spareBuf, h.spareLbs, h.spareSpans = nil, nil, nil
	}
	h.body, h.digest = buf[headRoom-base:headRoom-base+len(body)], out.digest // buf may have grown since
	e.clusters[name] = h
	return out, nil
}

// collect finds the pieces of one locality's endpoints, encoding (and
// validating) those not seen before. The result is scratch, valid until the
// next call.
func (e *encoder) collect(w *walk, lbs []Endpoint) ([]piece, error) {
	pieces := e.pieces[:0]
	for i, lb := range lbs {
		p, err := e.find(w, lb)
		if err != nil {
			return nil, fmt.Errorf("lb_endpoints[%d]: %w", i, err)
		}
		pieces = append(pieces, p)
		w.lbs = append(w.lbs, lb)
	}
	e.pieces = pieces
	return pieces, nil
}

func (e *encoder) find(w *walk, lb Endpoint) (piece, error) {
	prev := w.prev.lbs
	// In step with the last document, or one endpoint removed. (After a
	// replaced endpoint, the next one is found at j+1.)
	if w.j < len(prev) && prev[w.j] == lb {
		w.j++
		w.misses = 0
		return piece{prev: w.j - 1}, nil
	}
	if w.j+1 < len(prev) && prev[w.j+1] == lb {
		w.j += 2
		w.misses = 0
		return piece{prev: w.j - 1}, nil
	}
	// Out of step: look a little ahead, then in the index, to fall back in
	// step after the endpoint found.
	for k := w.j + 2; k < min(len(prev), w.j+resyncWindow); k++ {
		if prev[k] == lb {
			w.j = k + 1
			w.misses = 0
			return piece{prev: k}, nil
		}
	}
	if w.index == nil && w.misses >= indexAfter && len(prev) > resyncWindow {
		w.index = make(map[Endpoint]int, len(prev))
		for k, p := range prev {
			w.index[p] = k
		}
	}
	if k, ok := w.index[lb]; ok {
		w.j = k + 1
		w.misses = 0
		return piece{prev: k}, nil
	}
	w.misses++
	f, err := e.fragment(lb.LbEndpoint())
	if err != nil {
		return piece{}, err
	}
	e.fragments++
	return piece{prev: -1, frag: f}, nil
}

// fragment encodes one endpoint as it appears in the document, indentation
// included. Validating here (and the skeletons in skeleton) validates the
// whole CLA at the cost of the change only (Envoy rule 9).
func (e *encoder) fragment(lb *endpointv3.LbEndpoint) ([]byte, error) {
	if lb == nil {
		return nil, errors.New("nil LbEndpoint")
	}
	if err := lb.ValidateAll(); err != nil {
		return nil, err
	}
	switch e.format {
	case FormatPB:
		if b, ok := appendLbEndpoint(e.frags, lb); ok {
			frag := b[len(e.frags):len(b):len(b)]
			e.frags = b // earlier fragments stay where they are, even if b moved
			return frag, nil
		}
		return pbOpts.Marshal(lb)
	case FormatYAML:
		return yamlFragment(lb)
	default:
		return jsonFragment(lb)
	}
}

// pieceLen is the length a piece takes in the document.
func (e *encoder) pieceLen(w *walk, p piece) int {
	if p.prev >= 0 {
		return int(w.prev.spans[p.prev].n)
	}
	if e.format == FormatPB {
		return protowire.SizeTag(lbEndpointsNum) + protowire.SizeBytes(len(p.frag))
	}
	return len(p.frag)
}

// appendPieces appends one locality's endpoints, sep between them, and
// records where each one lands. Consecutive pieces of the previous document
// that lay side by side there (sep between them) are copied in one go.
// Side by side means same locality: localities are never adjacent (each has
// its own head, at least two bytes, between them).
func (e *encoder) appendPieces(dst []byte, w *walk, pieces []piece, sep string) []byte {
	src := w.prev.buf
	runFrom, runTo := -1, -1 // the bytes of src still to copy
	flush := func() {
		if runFrom >= 0 {
			dst = append(dst, src[runFrom:runTo]...)
			runFrom = -1
		}
	}
	for i, p := range pieces {
		if p.prev >= 0 {
			s := w.prev.spans[p.prev]
			off, n := int(s.off)-w.prev.base, int(s.n)
			if runFrom >= 0 && off == runTo+len(sep) {
				// Lands where the run puts it, sep included.
				w.spans = append(w.spans, spanOf(len(dst)+off-runFrom, n))
				runTo = off + n
				continue
			}
			flush()
			if i > 0 {
				dst = append(dst, sep...)
			}
			w.spans = append(w.spans, spanOf(len(dst), n))
			runFrom, runTo = off, off+n
			// The copy happens at flush: dst must not grow before then,
			// which holds because only flush appends while a run is open.
			continue
		}
		flush()
		if i > 0 {
			dst = append(dst, sep...)
		}
		start := len(dst)
		if e.format == FormatPB {
			dst = protowire.AppendTag(dst, lbEndpointsNum, protowire.BytesType)
			dst = protowire.AppendBytes(dst, p.frag)
		} else {
			dst = append(dst, p.frag...)
		}
		w.spans = append(w.spans, spanOf(start, len(dst)-start))
	}
	flush()
	return dst
}

// skeleton returns a shallow copy of m without field skip, validated. The copy
// shares m's values (it is only marshalled) and keeps unknown fields. The two
// messages the encoders cut up (a CLA without its endpoints, a locality
// without its lb_endpoints) are copied field by field: the copy through
// protoreflect was two thirds of a locality's cost, and a Service in three
// zones has three. TestSkeletonKnowsEveryField fails once the protos gain a
// field the copy does not carry; any other message goes through protoreflect.
func skeleton(m proto.Message, skip protoreflect.FieldDescriptor) (proto.Message, error) {
	var dst proto.Message
	switch src := m.(type) {
	case *endpointv3.LocalityLbEndpoints:
		if skip != lleLbEndpoints {
			return reflectSkeleton(m, skip)
		}
		dst = &endpointv3.LocalityLbEndpoints{Locality: src.Locality, Metadata: src.Metadata,
			LoadBalancingWeight: src.LoadBalancingWeight, Priority: src.Priority, Proximity: src.Proximity, LbConfig: src.LbConfig}
	case *endpointv3.ClusterLoadAssignment:
		if skip != claEndpoints {
			return reflectSkeleton(m, skip)
		}
		dst = &endpointv3.ClusterLoadAssignment{ClusterName: src.ClusterName, NamedEndpoints: src.NamedEndpoints, Policy: src.Policy}
	default:
		return reflectSkeleton(m, skip)
	}
	if u := m.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.ProtoReflect().SetUnknown(u)
	}
	return validated(dst)
}

// reflectSkeleton is skeleton for any message, through protoreflect.
func reflectSkeleton(m proto.Message, skip protoreflect.FieldDescriptor) (proto.Message, error) {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != skip {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	return validated(dst.Interface())
}

func validated(m proto.Message) (proto.Message, error) {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func countEndpoints(eps [][]Endpoint) int {
	n := 0
	for _, l := range eps {
		n += len(l)
	}
	return n
}

// given is an LbEndpoint of a CLA given whole, as an Endpoint: the message
// is its own identity. (A struct of one pointer is stored in an interface
// as the pointer: wrapping allocates nothing.)
type given struct{ lb *endpointv3.LbEndpoint }

func (g given) LbEndpoint() *endpointv3.LbEndpoint { return g.lb }

func (g given) HealthStatus() corev3.HealthStatus { return g.lb.GetHealthStatus() }

// givenEndpoints is the lb_endpoints of cla's localities as Endpoints.
func givenEndpoints(cla *endpointv3.ClusterLoadAssignment) [][]Endpoint {
	eps := make([][]Endpoint, len(cla.GetEndpoints()))
	for i, lle := range cla.GetEndpoints() {
		eps[i] = make([]Endpoint, len(lle.GetLbEndpoints()))
		for j, lb := range lle.GetLbEndpoints() {
			eps[i][j] = given{lb}
		}
	}
	return eps
}
