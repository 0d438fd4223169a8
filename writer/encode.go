package writer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// claTypeURL is the type of the one resource in every file (Envoy rule 1).
const claTypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

// The fields that the encoder writes itself rather than through proto.Marshal,
// looked up in the generated descriptors so a typo cannot slip in.
var (
	claEndpoints   = fieldOf(&endpointv3.ClusterLoadAssignment{}, "endpoints")
	lleLbEndpoints = fieldOf(&endpointv3.LocalityLbEndpoints{}, "lb_endpoints")
	respVersion    = fieldOf(&discoveryv3.DiscoveryResponse{}, "version_info")
	respResources  = fieldOf(&discoveryv3.DiscoveryResponse{}, "resources")
	anyTypeURL     = fieldOf(&anypb.Any{}, "type_url")
	anyValue       = fieldOf(&anypb.Any{}, "value")
)

func fieldOf(m proto.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("writer: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return fd
}

// minCache keeps small caches from being swept over and over.
const minCache = 1024

// encoder turns CLAs into file content in one format. It caches the encoded
// fragment of every LbEndpoint it has seen, keyed by pointer: render hands us
// the same immutable pointer for an endpoint that did not change, so an event
// costs one map lookup per endpoint plus the encoding of the new ones, instead
// of a full proto.Marshal (~7 ms for 10,000 endpoints).
//
// The document is assembled around the fragments: every message other than
// the endpoints (the CLA without its endpoints, each locality without its
// lb_endpoints) is encoded whole each time, and the repeated fields are
// appended after it. Field order inside a message does not matter to any of
// the three parsers, so the result parses to the same message.
//
// Not safe for concurrent use; the Writer serialises calls.
type encoder struct {
	format Format
	frags  map[*endpointv3.LbEndpoint][]byte
	// latest holds the last CLA encoded per cluster: its endpoints are the
	// live ones, all others may be evicted. live counts them.
	latest map[string]*endpointv3.ClusterLoadAssignment
	live   int

	body  []byte   // scratch for the CLA encoding, reused between calls
	parts [][]byte // scratch for the fragments of one locality
}

func newEncoder(f Format) *encoder {
	return &encoder{
		format: f,
		frags:  make(map[*endpointv3.LbEndpoint][]byte),
		latest: make(map[string]*endpointv3.ClusterLoadAssignment),
	}
}

// encoded is one file's content.
type encoded struct {
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
	var body []byte
	var err error
	switch e.format {
	case FormatPB:
		body, err = e.appendPB(e.body[:0], cla)
	case FormatYAML:
		body, err = e.appendYAML(e.body[:0], cla)
	default:
		body, err = e.appendJSON(e.body[:0], cla)
	}
	if err != nil {
		return encoded{}, err
	}
	e.body = body[:0]
	out := encoded{digest: sha256.Sum256(body)}
	// 16 hex digits (64 bits) tell versions apart in logs and Envoy's
	// config dump; the change detection uses the whole digest.
	out.version = hex.EncodeToString(out.digest[:8])
	switch e.format {
	case FormatPB:
		out.data = wrapPB(out.version, body)
	case FormatYAML:
		out.data = wrapYAML(out.version, body)
	default:
		out.data = wrapJSON(out.version, body)
	}
	e.remember(cla)
	return out, nil
}

// fragments returns the cached encodings of lbs, encoding (and validating)
// the endpoints not seen before. The slice is scratch, valid until the next call.
func (e *encoder) fragments(lbs []*endpointv3.LbEndpoint) ([][]byte, error) {
	parts := e.parts[:0]
	for i, lb := range lbs {
		f, ok := e.frags[lb]
		if !ok {
			var err error
			if f, err = e.fragment(lb); err != nil {
				return nil, fmt.Errorf("lb_endpoints[%d]: %w", i, err)
			}
			e.frags[lb] = f
		}
		parts = append(parts, f)
	}
	e.parts = parts
	return parts, nil
}

// fragment encodes one endpoint as it appears in the document, indentation
// included. Validating here (and the skeletons in skeleton) validates the
// whole CLA at the cost of the change only (Envoy rule 9): no field of a CLA
// has a rule that spans several endpoints.
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

// remember records cla as its cluster's latest and evicts fragments no latest
// CLA uses once the cache has grown to twice the live endpoints. Each sweep
// costs O(live) and follows at least live+minCache insertions, so eviction
// is amortised O(1) per new endpoint and memory stays within about 2x live.
func (e *encoder) remember(cla *endpointv3.ClusterLoadAssignment) {
	e.live += countEndpoints(cla) - countEndpoints(e.latest[cla.GetClusterName()])
	e.latest[cla.GetClusterName()] = cla
	if len(e.frags) <= 2*e.live+minCache {
		return
	}
	// A new map rather than deletes: Go maps never give back their buckets.
	next := make(map[*endpointv3.LbEndpoint][]byte, e.live)
	for _, c := range e.latest {
		for _, lle := range c.GetEndpoints() {
			for _, lb := range lle.GetLbEndpoints() {
				if f, ok := e.frags[lb]; ok {
					next[lb] = f
				}
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

// --- binary protobuf ---

var pbOpts = proto.MarshalOptions{Deterministic: true}

// appendPB appends the CLA's wire encoding: the CLA without endpoints, then
// each locality as field "endpoints", itself the locality without lb_endpoints
// followed by one "lb_endpoints" field per cached endpoint fragment.
func (e *encoder) appendPB(dst []byte, cla *endpointv3.ClusterLoadAssignment) ([]byte, error) {
	skel, err := skeleton(cla, claEndpoints)
	if err != nil {
		return nil, err
	}
	if dst, err = pbOpts.MarshalAppend(dst, skel); err != nil {
		return nil, err
	}
	for i, lle := range cla.GetEndpoints() {
		if lle == nil {
			return nil, fmt.Errorf("endpoints[%d]: nil LocalityLbEndpoints", i)
		}
		skel, err := skeleton(lle, lleLbEndpoints)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		head, err := pbOpts.Marshal(skel)
		if err != nil {
			return nil, err
		}
		parts, err := e.fragments(lle.GetLbEndpoints())
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d].%w", i, err)
		}
		// The locality's length prefix comes first, so size it before writing.
		tag := protowire.Number(lleLbEndpoints.Number())
		size := len(head)
		for _, p := range parts {
			size += protowire.SizeTag(tag) + protowire.SizeBytes(len(p))
		}
		dst = protowire.AppendTag(dst, protowire.Number(claEndpoints.Number()), protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		dst = append(dst, head...)
		for _, p := range parts {
			dst = protowire.AppendTag(dst, tag, protowire.BytesType)
			dst = protowire.AppendBytes(dst, p)
		}
	}
	return dst, nil
}

// wrapPB builds the DiscoveryResponse around the CLA's encoding by hand: one
// copy of the body instead of an unmarshal and marshal of the whole CLA.
func wrapPB(version string, body []byte) []byte {
	verTag := protowire.Number(respVersion.Number())
	resTag := protowire.Number(respResources.Number())
	urlTag := protowire.Number(anyTypeURL.Number())
	valTag := protowire.Number(anyValue.Number())
	anyLen := protowire.SizeTag(urlTag) + protowire.SizeBytes(len(claTypeURL)) +
		protowire.SizeTag(valTag) + protowire.SizeBytes(len(body))
	n := protowire.SizeTag(verTag) + protowire.SizeBytes(len(version)) +
		protowire.SizeTag(resTag) + protowire.SizeBytes(anyLen)
	out := make([]byte, 0, n)
	out = protowire.AppendTag(out, verTag, protowire.BytesType)
	out = protowire.AppendString(out, version)
	out = protowire.AppendTag(out, resTag, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(anyLen))
	out = protowire.AppendTag(out, urlTag, protowire.BytesType)
	out = protowire.AppendString(out, claTypeURL)
	out = protowire.AppendTag(out, valTag, protowire.BytesType)
	out = protowire.AppendBytes(out, body)
	return out
}
