package writer

import (
	"fmt"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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

	endpointsNum   = protowire.Number(claEndpoints.Number())
	lbEndpointsNum = protowire.Number(lleLbEndpoints.Number())
	versionNum     = protowire.Number(discoveryResponse.Fields().ByName("version_info").Number())
	resourcesNum   = protowire.Number(discoveryResponse.Fields().ByName("resources").Number())
	typeURLNum     = protowire.Number(fieldOf(&anypb.Any{}, "type_url").Number())
	valueNum       = protowire.Number(fieldOf(&anypb.Any{}, "value").Number())
)

func fieldOf(m proto.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("writer: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return fd
}

var pbOpts = proto.MarshalOptions{Deterministic: true}

// appendPB appends the CLA's wire encoding: the CLA without endpoints, then
// each locality as an "endpoints" field holding the locality without
// lb_endpoints followed by one "lb_endpoints" field per endpoint.
func (e *encoder) appendPB(dst []byte, w *walk, cla *endpointv3.ClusterLoadAssignment, eps [][]Endpoint) ([]byte, error) {
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
		pieces, err := e.collect(w, eps[i])
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d].%w", i, err)
		}
		// The locality's length comes before its content: size it first.
		size := len(head)
		for _, p := range pieces {
			size += e.pieceLen(w, p)
		}
		dst = protowire.AppendTag(dst, endpointsNum, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		dst = append(dst, head...)
		dst = e.appendPieces(dst, w, pieces, "")
	}
	return dst, nil
}

// pbHead is the DiscoveryResponse up to the CLA's bytes:
// version_info, then resources[0] = Any{type_url, value: <CLA>}.
func pbHead(version string, claLen int) []byte {
	anyLen := protowire.SizeTag(typeURLNum) + protowire.SizeBytes(len(claTypeURL)) +
		protowire.SizeTag(valueNum) + protowire.SizeBytes(claLen)
	out := make([]byte, 0, 128)
	out = protowire.AppendTag(out, versionNum, protowire.BytesType)
	out = protowire.AppendString(out, version)
	out = protowire.AppendTag(out, resourcesNum, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(anyLen))
	out = protowire.AppendTag(out, typeURLNum, protowire.BytesType)
	out = protowire.AppendString(out, claTypeURL)
	out = protowire.AppendTag(out, valueNum, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(claLen))
	return out
}
