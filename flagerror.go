package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// The messages of Go's flag package and urfave/cli for a value they could
// not parse. They say "-debounce" and, for durations and booleans, only
// "parse error": flagError says it again as --debounce: and why.
var (
	reInvalidValue = regexp.MustCompile(`^invalid value ("(?:[^"\\]|\\.)*") for flag -+([\w.-]+): (.*)$`)
	reInvalidBool  = regexp.MustCompile(`^invalid boolean value ("(?:[^"\\]|\\.)*") for -+([\w.-]+): (.*)$`)
	reNeedsValue   = regexp.MustCompile(`^flag needs an argument: -+([\w.-]+)$`)
	reUnknown      = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	reFromEnv      = regexp.MustCompile(`^could not parse ("(?:[^"\\]|\\.)*") as \w+ value from environment variable "(\w+)" for flag ([\w.-]+): (.*)$`)
)

// flagError rewrites a flag parsing error to name the flag first and say
// what is wrong with the value: `--debounce: missing unit in "50"`, not
// `invalid value "50" for flag -debounce: parse error`. Other errors are
// returned as they are.
func flagError(err error) error {
	msg := err.Error()
	if m := reInvalidValue.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: %s", m[2], valueProblem(m[2], unquote(m[1]), m[3]))
	}
	if m := reInvalidBool.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: %s", m[2], valueProblem(m[2], unquote(m[1]), m[3]))
	}
	if m := reNeedsValue.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: needs a value", m[1])
	}
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: unknown flag", m[1])
	}
	if m := reFromEnv.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s (%s): %s", m[3], m[2], valueProblem(m[3], unquote(m[1]), m[4]))
	}
	return err
}

// valueProblem says what is wrong with value for the flag name, from the
// flag's type; reason is the parser's own, used for other types.
func valueProblem(name, value, reason string) string {
	switch flagByName(name).(type) {
	case *cli.DurationFlag:
		_, err := time.ParseDuration(value)
		if err == nil {
			break
		}
		// "time: missing unit in duration \"50\"" -> missing unit in "50"
		s := strings.TrimPrefix(err.Error(), "time: ")
		s = strings.Replace(s, " in duration ", " in ", 1)
		return s + " (want a duration such as 50ms, 2s or 1m30s)"
	case *cli.BoolFlag:
		return fmt.Sprintf("want true or false, got %q", value)
	}
	return fmt.Sprintf("invalid value %q: %s", value, reason)
}

// flagByName finds a flag of edsync or of envoy-config.
func flagByName(name string) cli.Flag {
	for _, f := range flags() {
		if f.Names()[0] == name {
			return f
		}
	}
	return nil
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// isFlagError recognises urfave/cli's errors about flag values it could not
// parse, which do not go through OnUsageError.
func isFlagError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "could not parse") || strings.Contains(s, "flag provided but not defined") ||
		strings.Contains(s, "invalid value")
}
