package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// replaceAttr makes the text and JSON handlers print the same readable
// values: durations as rounded strings ("7.68ms", where JSON would print
// nanoseconds), named types by their String() (JSON would print an enum's
// number), and every record on one line: a newline in a message, a string
// or an error (errors.Join puts one between its errors) becomes "; ", so
// a log shipper that splits on lines never cuts a record in two. Types
// edsync logs have a String() or LogValue() of their own; this is the net
// for the rest (client-go's values through klog, future attributes).
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		return slog.String(a.Key, roundDuration(a.Value.Duration()).String())
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "\n") {
			return slog.String(a.Key, flatten(s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			return slog.String(a.Key, flatten(v.Error()))
		case json.Marshaler:
			// It chose its JSON form.
		case fmt.Stringer:
			return slog.String(a.Key, flatten(v.String()))
		}
	}
	return a
}

// flatten puts a multi-line text on one line.
func flatten(s string) string {
	s = strings.TrimRight(s, "\n")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "; ")
}

// roundDuration keeps three significant digits (7.68ms, 532µs, 12.3s): the
// nanoseconds of a measured time are noise to a reader.
func roundDuration(d time.Duration) time.Duration {
	abs := d
	if abs < 0 {
		abs = -abs
	}
	unit := time.Duration(1)
	for abs/1000 >= unit {
		unit *= 10
	}
	return d.Round(unit)
}
