package writer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The encoder turns CLAs into file content, in time proportional to what
// changed since the cluster's last CLA rather than to its size.
//
// Render hands us the same immutable *LbEndpoint for an endpoint that did not
// change. So:
//
//   - each endpoint is encoded once, as a fragment that is cached by pointer
//     (validated at the same time: no CLA rule spans several endpoints);
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
//
// The encoder is not safe for concurrent use; the Writer serialises calls.
type encoder struct {
	format Format
	// frags holds the fragment of every live endpoint (and, until the next
	// sweep, some dead ones), for endpoints the walk does not find in step.
	frags map[*endpointv3.LbEndpoint][]byte
	// clusters holds each cluster's last document; their endpoints are the
	// live ones, live counts them.
	clusters map[string]*history
	live     int
	pieces   []piece // scratch for one locality
}

// minCache keeps small caches from being swept over and over.
const minCache = 1024

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
	buf    []byte
	body   []byte // the CLA's encoding, in buf
	digest [sha256.Size]byte
	lbs    []*endpointv3.LbEndpoint
	spans  []span
	// The arrays of the document before, reused for the next one.
	spareBuf   []byte
	spareLbs   []*endpointv3.LbEndpoint
	spareSpans []span
}

type span struct{ off, n int }

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
	lbs   []*endpointv3.LbEndpoint
	spans []span
}

func newEncoder(f Format) *encoder {
	return &encoder{
		format:   f,
		frags:    make(map[*endpointv3.LbEndpoint][]byte),
		clusters: make(map[string]*history),
	}
}

// encoded is one file's content.
type encoded struct {
	// data is valid until the cluster's next encode but one: it lives in
	// the cluster's history buffers. Callers that keep it longer copy it.
	data    []byte
	version string
	// digest is the sha256 of the CLA's encoding. The file is a pure function
	// of that encoding (the version is derived from it too), so equal digests
	// mean equal file bytes: the Writer compares digests, not files.
	digest [sha256.Size]byte
}

func (e *encoder) encode(cla *endpointv3.ClusterLoadAssignment) (encoded, error) {
	if cla == nil {
		return encoded{}, errors.New("nil ClusterLoadAssignment")
	}
	h := e.clusters[cla.GetClusterName()]
	if h == nil {
		h = &history{}
	}
	w := &walk{prev: h, lbs: h.spareLbs[:0], spans: h.spareSpans[:0]}
	buf := h.spareBuf[:0]
	if cap(buf) < headRoom {
		buf = make([]byte, 0, headRoom+len(h.buf))
	}
	buf = buf[:headRoom]
	var err error
	switch e.format {
	case FormatPB:
		buf, err = e.appendPB(buf, w, cla)
	case FormatYAML:
		buf, err = e.appendYAML(buf, w, cla)
	default:
		buf, err = e.appendJSON(buf, w, cla)
	}
	if err != nil {
		return encoded{}, err
	}
	body := buf[headRoom:]
	out := encoded{digest: h.digest}
	// Comparing costs a tenth of hashing: worth it for the many Writes
	// (resyncs, restarts) that bring nothing new.
	if h.body == nil || !bytes.Equal(body, h.body) {
		out.digest = sha256.Sum256(body)
	}
	// 16 hex digits (64 bits) tell versions apart in logs and Envoy's
	// config dump; the change detection uses the whole digest.
	out.version = hex.EncodeToString(out.digest[:8])
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
	out.data = buf[start:]

	// This document becomes the history; the previous one the spare.
	e.live += len(w.lbs) - len(h.lbs)
	clear(h.lbs) // let dead endpoints go
	h.spareBuf, h.spareLbs, h.spareSpans = h.buf, h.lbs, h.spans
	h.buf, h.lbs, h.spans = buf, w.lbs, w.spans
	if cap(h.spareBuf) > 4*cap(buf) {
		// The cluster shrank (a Service scaled down or gone): do not keep
		// its old size around until its next change.
		h.spareBuf, h.spareLbs, h.spareSpans = nil, nil, nil
	}
	h.body, h.digest = buf[headRoom:headRoom+len(body)], out.digest // buf may have grown since
	e.clusters[cla.GetClusterName()] = h
	e.sweep()
	return out, nil
}

// collect finds the pieces of one locality's endpoints, encoding (and
// validating) those not seen before. The result is scratch, valid until the
// next call.
func (e *encoder) collect(w *walk, lbs []*endpointv3.LbEndpoint) ([]piece, error) {
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

func (e *encoder) find(w *walk, lb *endpointv3.LbEndpoint) (piece, error) {
	prev := w.prev.lbs
	// In step with the last document, or one endpoint removed. (After a
	// replaced endpoint, the next one is found at j+1.)
	if w.j < len(prev) && prev[w.j] == lb {
		w.j++
		return piece{prev: w.j - 1}, nil
	}
	if w.j+1 < len(prev) && prev[w.j+1] == lb {
		w.j += 2
		return piece{prev: w.j - 1}, nil
	}
	if f, ok := e.frags[lb]; ok {
		// Known but out of step: look ahead to fall back in step.
		for k := w.j + 2; k < min(len(prev), w.j+resyncWindow); k++ {
			if prev[k] == lb {
				w.j = k + 1
				return piece{prev: k}, nil
			}
		}
		return piece{prev: -1, frag: f}, nil
	}
	f, err := e.fragment(lb)
	if err != nil {
		return piece{}, err
	}
	e.frags[lb] = f
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
		return w.prev.spans[p.prev].n
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
			if runFrom >= 0 && s.off == runTo+len(sep) {
				// Lands where the run puts it, sep included.
				w.spans = append(w.spans, span{len(dst) + s.off - runFrom, s.n})
				runTo = s.off + s.n
				continue
			}
			flush()
			if i > 0 {
				dst = append(dst, sep...)
			}
			w.spans = append(w.spans, span{len(dst), s.n})
			runFrom, runTo = s.off, s.off+s.n
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
		w.spans = append(w.spans, span{start, len(dst) - start})
	}
	flush()
	return dst
}

// skeleton returns a shallow copy of m without field skip, validated. The copy
// shares m's values (it is only marshalled) and keeps unknown fields, so any
// field added to the protos later is carried along without code here.
func skeleton(m proto.Message, skip protoreflect.FieldDescriptor) (proto.Message, error) {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != skip {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	if v, ok := dst.Interface().(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, err
		}
	}
	return dst.Interface(), nil
}

// sweep evicts the fragments that no cluster's last document uses, once the
// cache has grown to twice the live endpoints. Each sweep costs O(live) and
// follows at least live+minCache insertions, so eviction is amortised O(1)
// per new endpoint and the cache stays within about twice the live endpoints.
func (e *encoder) sweep() {
	if len(e.frags) <= 2*e.live+minCache {
		return
	}
	// A new map rather than deletes: Go maps never give back their memory.
	next := make(map[*endpointv3.LbEndpoint][]byte, e.live)
	for _, h := range e.clusters {
		for _, lb := range h.lbs {
			if f, ok := e.frags[lb]; ok {
				next[lb] = f
			}
		}
	}
	e.frags = next
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, lle := range cla.GetEndpoints() {
		n += len(lle.GetLbEndpoints())
	}
	return n
}
