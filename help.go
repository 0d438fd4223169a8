package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// helpWidth is the column --help wraps at: the terminal's width when w is
// one, else 80.
func helpWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// helpWriter wraps the help text urfave/cli prints (which it leaves as
// long as each flag's usage, up to 324 columns) at width. The line of a
// flag or command goes on in the column where its usage starts, past the
// names and the two spaces or more that urfave/cli puts after them; with
// too little room there, the usage goes under the names. Other lines go on
// at their own indentation.
type helpWriter struct {
	out   io.Writer
	width int
	line  []byte // the line being written, without its newline
	err   error
}

// minUsageWidth is the narrowest a flag's usage column may get beside the
// names before it moves under them.
const minUsageWidth = 30

func (h *helpWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			h.line = append(h.line, p...)
			break
		}
		h.line = append(h.line, p[:i]...)
		h.emit()
		p = p[i+1:]
	}
	return n, h.err
}

// Flush writes an unfinished last line, ending it with a newline.
func (h *helpWriter) Flush() error {
	if len(h.line) > 0 {
		h.emit()
	}
	return h.err
}

func (h *helpWriter) emit() {
	if h.err == nil {
		_, h.err = io.WriteString(h.out, wrapHelpLine(string(h.line), h.width))
	}
	h.line = h.line[:0]
}

// wrapHelpLine wraps one line of help at width, and ends it with a newline.
func wrapHelpLine(line string, width int) string {
	line = strings.TrimRight(line, " ")
	if utf8.RuneCountInString(line) <= width {
		return line + "\n"
	}
	indent := len(line) - len(strings.TrimLeft(line, " "))
	// A flag or a command, then two spaces or more: the text to wrap
	// starts after them. Otherwise (prose) it starts at the indentation.
	start := indent
	if i := strings.Index(line[indent:], "  "); i > 0 {
		start = indent + i
		for start < len(line) && line[start] == ' ' {
			start++
		}
	}
	var b strings.Builder
	head := line[:start]
	if start > indent && width-start < minUsageWidth {
		// Names that leave too little room: the usage goes under them.
		b.WriteString(strings.TrimRight(head, " ") + "\n")
		head = strings.Repeat(" ", indent+6)
	}
	cont := strings.Repeat(" ", utf8.RuneCountInString(head))
	b.WriteString(head)
	col, empty := utf8.RuneCountInString(head), true
	for _, word := range strings.Fields(line[start:]) {
		n := utf8.RuneCountInString(word)
		if !empty && col+1+n > width {
			b.WriteString("\n" + cont)
			col, empty = len(cont), true
		}
		if !empty {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += n
		empty = false
	}
	b.WriteByte('\n')
	return b.String()
}
