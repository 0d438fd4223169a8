package writer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// The JSON and YAML documents are assembled from pieces laid out for their
// fixed place in the document, so cached endpoint fragments are copied as
// they are. The shapes (JSON left, YAML right):
//
//	{                                      version_info: '…'
//	  "version_info": "…",                 resources:
//	  "resources": [                       - '@type': type.googleapis.com/…
//	    {                                    cluster_name: …
//	      "@type": "type.googleapis.com/…",  policy: …
//	      "cluster_name": "…",               endpoints:
//	      "policy": {…},                     - locality: …
//	      "endpoints": [                       lb_endpoints:
//	        {                                  - endpoint: …
//	          "locality": {…},                   health_status: HEALTHY
//	          "lb_endpoints": [                - endpoint: …
//	            {"endpoint": {…}, …},
//	            {"endpoint": {…}, …}
//	          ]
//	        }
//	      ]
//	    }
//	  ]
//	}
//
// The lists (endpoints, lb_endpoints) come last in their object: key order
// means nothing to protojson, nor to Envoy's YAML-to-JSON loader.

// protojson inserts random whitespace (detrand) that depends on the binary,
// so its output always passes through json.Indent or json.Compact, which drop
// all insignificant whitespace and lay out their own.
var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

const (
	jsonCLA      = "    "         // the CLA object (inside the Any) opens here
	jsonLocality = "        "     // each LocalityLbEndpoints object
	jsonEndpoint = "            " // each LbEndpoint object
)

// jsonMembers returns the members of m's JSON object, laid out for an object
// opening at indent open: one "key": value per line, without the braces, the
// last newline or a trailing comma. Empty for an empty object.
func jsonMembers(m proto.Message, open string) ([]byte, error) {
	obj, err := indentJSON(m, open)
	if err != nil {
		return nil, err
	}
	if string(obj) == "{}" {
		return nil, nil
	}
	// obj is "{\n" + members + "\n" + open + "}".
	return obj[2 : len(obj)-len(open)-2], nil
}

// indentJSON renders m as an indented JSON object whose first line carries no
// indent and whose later lines are indented under prefix.
func indentJSON(m proto.Message, prefix string) ([]byte, error) {
	raw, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	return indentRaw(raw, prefix)
}

// indentRaw lays out JSON, whatever whitespace it came with.
func indentRaw(raw []byte, prefix string) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, prefix, "  "); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// jsonFragment puts an endpoint on one line. Indented, an endpoint takes 15
// lines and 400 bytes; 10,000 of them made a 4 MB file to write, hash and
// have Envoy parse on every change. One line per endpoint keeps the file a
// third of that, and easy to grep and diff.
func jsonFragment(lb *endpointv3.LbEndpoint) ([]byte, error) {
	raw, err := jsonOpts.Marshal(lb)
	if err != nil {
		return nil, err
	}
	line, err := oneLineJSON(raw)
	if err != nil {
		return nil, err
	}
	return append([]byte(jsonEndpoint), line...), nil
}

// oneLineJSON lays out JSON on one line with a space after each ':' and ',',
// whatever whitespace it came with.
func oneLineJSON(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	out := make([]byte, 0, buf.Len()+buf.Len()/8)
	inString, escaped := false, false
	for _, c := range buf.Bytes() {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ':' || c == ','):
			out = append(out, ' ')
		}
	}
	return out, nil
}

// appendJSON appends the CLA's members (the Any's members after "@type").
func (e *encoder) appendJSON(dst []byte, w *walk, cla *endpointv3.ClusterLoadAssignment, eps [][]Endpoint) ([]byte, error) {
	skel, err := skeleton(cla, claEndpoints)
	if err != nil {
		return nil, err
	}
	members, err := jsonMembers(skel, jsonCLA)
	if err != nil {
		return nil, err
	}
	dst = append(dst, members...)
	if len(cla.GetEndpoints()) == 0 {
		return dst, nil
	}
	if len(members) > 0 {
		dst = append(dst, ",\n"...)
	}
	dst = append(dst, jsonCLA+`  "endpoints": [`+"\n"...)
	for i, lle := range cla.GetEndpoints() {
		if i > 0 {
			dst = append(dst, ",\n"...)
		}
		if dst, err = e.appendJSONLocality(dst, w, lle, eps[i]); err != nil {
			return nil, fmt.Errorf("endpoints[%d]%w", i, err)
		}
	}
	return append(dst, "\n"+jsonCLA+"  ]"...), nil
}

// appendJSONLocality appends one LocalityLbEndpoints object. Errors start
// with "." or ":" to follow the caller's "endpoints[i]".
func (e *encoder) appendJSONLocality(dst []byte, w *walk, lle *endpointv3.LocalityLbEndpoints, eps []Endpoint) ([]byte, error) {
	if lle == nil {
		return nil, fmt.Errorf(": nil LocalityLbEndpoints")
	}
	skel, err := skeleton(lle, lleLbEndpoints)
	if err != nil {
		return nil, fmt.Errorf(": %w", err)
	}
	members, err := jsonMembers(skel, jsonLocality)
	if err != nil {
		return nil, fmt.Errorf(": %w", err)
	}
	pieces, err := e.collect(w, eps)
	if err != nil {
		return nil, fmt.Errorf(".%w", err)
	}
	if len(members) == 0 && len(pieces) == 0 {
		return append(dst, jsonLocality+"{}"...), nil
	}
	dst = append(dst, jsonLocality+"{\n"...)
	dst = append(dst, members...)
	if len(pieces) > 0 {
		if len(members) > 0 {
			dst = append(dst, ",\n"...)
		}
		dst = append(dst, jsonLocality+`  "lb_endpoints": [`+"\n"...)
		dst = e.appendPieces(dst, w, pieces, ",\n")
		dst = append(dst, "\n"+jsonLocality+"  ]"...)
	}
	return append(dst, "\n"+jsonLocality+"}"...), nil
}

// jsonHead is the document up to the CLA's members; jsonTail closes it.
func jsonHead(version string, claLen int) []byte {
	// version is hex: nothing to escape.
	head := "{\n  \"version_info\": \"" + version + "\",\n  \"resources\": [\n    {\n      \"@type\": \"" + claTypeURL + "\""
	if claLen > 0 {
		head += ",\n"
	}
	return []byte(head)
}

const jsonTail = "\n    }\n  ]\n}\n"

// --- YAML ---

// yamlBlock renders m as block YAML starting at column 0 (sigs.k8s.io/yaml:
// keys sorted, strings quoted wherever YAML would read them as something
// else). Empty for an empty message.
func yamlBlock(m proto.Message) ([]byte, error) {
	raw, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(escapeForYAML(raw))
	if err != nil {
		return nil, err
	}
	if string(y) == "{}\n" {
		return nil, nil
	}
	return y, nil
}

// escapeForYAML rewrites every non-ASCII character and DEL of protojson's
// output as an escape. JSONToYAML reads JSON with a YAML 1.1 parser, which
// rejects raw DEL and C1 controls and takes U+2028, U+2029 and U+0085 for
// line breaks inside strings. Such bytes only occur inside JSON strings, and
// the parser decodes the escapes to the same characters. Astral characters
// use YAML's \U escape: that parser does not join JSON surrogate pairs.
func escapeForYAML(raw []byte) []byte {
	i := 0
	for i < len(raw) && raw[i] < utf8.RuneSelf && raw[i] != 0x7f {
		i++
	}
	if i == len(raw) {
		return raw
	}
	out := append(make([]byte, 0, len(raw)+16), raw[:i]...)
	for i < len(raw) {
		c := raw[i]
		if c < utf8.RuneSelf && c != 0x7f {
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(raw[i:])
		i += n
		if r > 0xffff {
			out = fmt.Appendf(out, `\U%08X`, r)
		} else {
			out = fmt.Appendf(out, `\u%04X`, r)
		}
	}
	return out
}

func yamlFragment(lb *endpointv3.LbEndpoint) ([]byte, error) {
	block, err := yamlBlock(lb)
	if err != nil {
		return nil, err
	}
	if len(block) == 0 {
		return []byte("    - {}\n"), nil
	}
	return appendIndented(nil, block, "    - ", "      "), nil
}

// appendIndented appends block (lines ending in "\n") with first before its
// first line and rest before the others. Shifting every line by the same
// amount keeps YAML's relative indentation, multi-line scalars included.
// Empty lines stay empty: inside a block scalar, spaces there would be content.
func appendIndented(dst, block []byte, first, rest string) []byte {
	prefix := first
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line = block[:i+1]
		}
		block = block[len(line):]
		if len(line) > 1 {
			dst = append(dst, prefix...)
		}
		dst = append(dst, line...)
		prefix = rest
	}
	return dst
}

// appendYAML appends the CLA's keys (the resource's keys after "@type").
func (e *encoder) appendYAML(dst []byte, w *walk, cla *endpointv3.ClusterLoadAssignment, eps [][]Endpoint) ([]byte, error) {
	skel, err := skeleton(cla, claEndpoints)
	if err != nil {
		return nil, err
	}
	block, err := yamlBlock(skel)
	if err != nil {
		return nil, err
	}
	dst = appendIndented(dst, block, "  ", "  ")
	if len(cla.GetEndpoints()) == 0 {
		return dst, nil
	}
	dst = append(dst, "  endpoints:\n"...)
	for i, lle := range cla.GetEndpoints() {
		if lle == nil {
			return nil, fmt.Errorf("endpoints[%d]: nil LocalityLbEndpoints", i)
		}
		skel, err := skeleton(lle, lleLbEndpoints)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		block, err := yamlBlock(skel)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		pieces, err := e.collect(w, eps[i])
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d].%w", i, err)
		}
		if len(block) == 0 && len(pieces) == 0 {
			dst = append(dst, "  - {}\n"...)
			continue
		}
		dst = appendIndented(dst, block, "  - ", "    ")
		if len(pieces) > 0 {
			if len(block) == 0 {
				dst = append(dst, "  - lb_endpoints:\n"...)
			} else {
				dst = append(dst, "    lb_endpoints:\n"...)
			}
			dst = e.appendPieces(dst, w, pieces, "")
		}
	}
	return dst, nil
}

// yamlHead is the document up to the CLA's keys.
func yamlHead(version string) []byte {
	// Quoted: a hex version such as "12e4…" would otherwise read as a number.
	return []byte("version_info: '" + version + "'\nresources:\n- '@type': " + claTypeURL + "\n")
}
