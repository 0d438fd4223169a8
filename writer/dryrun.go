package writer

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// print shows one file as dry-run output: a "# <path>" line, then the
// content, then a newline if the content lacks one.
//
// JSON and YAML files are printed as the exact bytes that would be written.
// A binary protobuf file is printed as the same DiscoveryResponse in protobuf
// text format (the resource expanded from its Any), because raw bytes on a
// terminal help no one, and text format is what protobuf tools and Envoy's
// .pb_text files use; "#" starts a comment there, so the output stays valid.
func (w *Writer) print(j job) (outcome, error) {
	content := j.enc.data
	if w.format == FormatPB {
		var err error
		if content, err = pbText(content); err != nil {
			return failed, fmt.Errorf("%s: text format: %w", j.path, err)
		}
	}
	buf := make([]byte, 0, len(j.path)+len(content)+4)
	buf = append(buf, "# "+j.path+"\n"...)
	buf = append(buf, content...)
	if !bytes.HasSuffix(buf, []byte("\n")) {
		buf = append(buf, '\n')
	}
	if _, err := w.out.Write(buf); err != nil {
		return failed, fmt.Errorf("%s: dry-run output: %w", j.path, err)
	}
	w.log.Debug("printed", "cluster", j.cluster, "path", j.path, "version", j.enc.version)
	return written, nil
}

var textOpts = prototext.MarshalOptions{Multiline: true, Indent: "  "}

func pbText(data []byte) ([]byte, error) {
	resp := newDiscoveryResponse()
	if err := proto.Unmarshal(data, resp); err != nil {
		return nil, err
	}
	txt, err := textOpts.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return normalizeText(txt), nil
}

// normalizeText undoes prototext's deliberate instability: in multi-line
// output it puts one or two spaces after "name:", chosen per binary (detrand),
// so dry-run output would differ between builds. Every line is
// `indent name: value`, `indent name: {` or `indent }`, and a name is an
// identifier or a [bracketed] type URL, so the fix is line-local and never
// touches a string value.
func normalizeText(txt []byte) []byte {
	out := make([]byte, 0, len(txt))
	for len(txt) > 0 {
		line := txt
		if i := bytes.IndexByte(txt, '\n'); i >= 0 {
			line = txt[:i+1]
		}
		txt = txt[len(line):]
		i := 0
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i < len(line) && line[i] == '[' {
			for i < len(line) && line[i] != ']' {
				i++
			}
			i++
		} else {
			for i < len(line) && isIdent(line[i]) {
				i++
			}
		}
		if i+2 < len(line) && line[i] == ':' && line[i+1] == ' ' && line[i+2] == ' ' {
			out = append(out, line[:i+2]...)
			out = append(out, line[i+3:]...)
			continue
		}
		out = append(out, line...)
	}
	return out
}

func isIdent(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.'
}
