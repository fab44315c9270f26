package cli

import (
	"flag"
	"io"
)

// The conventions of the commands, for a command whose code lives in a
// package of its own (internal/check, which runs smtpd through smtpscript
// and so cannot be imported here).

// Exit statuses, as every command uses them.
const (
	ExitOK      = exitOK
	ExitFailure = exitFailure
	ExitUsage   = exitUsage
)

// ParseCommandLine parses args as every command does: -h prints the usage
// on stdout, a bad flag is one line on stderr. done reports that the
// command must exit with code.
func ParseCommandLine(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, argsUsage, help string) (code int, done bool) {
	return parseCommandLine(fs, args, stdout, stderr, argsUsage, help)
}

// UsageError prints err as the one line a bad command line gets and
// returns ExitUsage.
func UsageError(stderr io.Writer, name string, err error) int { return usageError(stderr, name, err) }

// ColorsOn decides a -color flag (auto, always, never) for w.
func ColorsOn(mode string, w io.Writer) (bool, error) { return colorsOn(mode, w) }

// SplitWords splits a command line into words as a POSIX shell would,
// without running one.
func SplitWords(s string) ([]string, error) { return splitWords(s) }
