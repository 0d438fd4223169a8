package writer

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/anypb" // google/protobuf/any.proto, which the message uses
)

// discoveryResponse describes envoy.service.discovery.v3.DiscoveryResponse,
// the message every file holds (Envoy rule 1), with the fields edsync
// writes or may read back. It is built here rather than imported: the
// generated package comes with the gRPC service stubs of xDS, which would
// link gRPC into edsync for one message type, about 10 MB of memory in
// every sidecar. Field numbers and names are Envoy's (its
// api/envoy/service/discovery/v3/discovery.proto); the descriptor is not
// registered, so the generated type can live beside it (tests use it to
// read files as Envoy does).
var discoveryResponse = func() protoreflect.MessageDescriptor {
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, label descriptorpb.FieldDescriptorProto_Label, typeName string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Type: typ.Enum(), Label: label.Enum()}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		str      = descriptorpb.FieldDescriptorProto_TYPE_STRING
	)
	file, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("edsync/envoy/service/discovery/v3/discovery.proto"),
		Package:    proto.String("envoy.service.discovery.v3"),
		Dependency: []string{"google/protobuf/any.proto"},
		Syntax:     proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("DiscoveryResponse"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("version_info", 1, str, optional, ""),
				field("resources", 2, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, repeated, ".google.protobuf.Any"),
				field("canary", 3, descriptorpb.FieldDescriptorProto_TYPE_BOOL, optional, ""),
				field("type_url", 4, str, optional, ""),
				field("nonce", 5, str, optional, ""),
			},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		panic(fmt.Sprintf("writer: DiscoveryResponse descriptor: %v", err))
	}
	return file.Messages().ByName("DiscoveryResponse")
}()

// newDiscoveryResponse returns an empty DiscoveryResponse to unmarshal into.
func newDiscoveryResponse() *dynamicpb.Message { return dynamicpb.NewMessage(discoveryResponse) }

// resourcesOf returns the resources (Any messages) of a DiscoveryResponse.
func resourcesOf(resp *dynamicpb.Message) protoreflect.List {
	return resp.Get(discoveryResponse.Fields().ByName("resources")).List()
}

// anyOf returns the type URL and bytes of a google.protobuf.Any message
// (a dynamic one: the resources of a DiscoveryResponse read here).
func anyOf(m protoreflect.Message) (typeURL string, value []byte) {
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByName("type_url")).String(), m.Get(fields.ByName("value")).Bytes()
}
