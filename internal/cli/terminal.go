package cli

import (
	"fmt"
	"os"

	"github.com/mattn/go-isatty"

	"github.com/tpe-protos/smtpd"
)

// isTerminal reports whether f (a reader or writer of a command) is a
// terminal: what a person sees, rather than a pipe or a file a script reads.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && (isatty.IsTerminal(file.Fd()) || isatty.IsCygwinTerminal(file.Fd()))
}

// parseColorMode parses a -color flag: auto, always or never.
func parseColorMode(s string) (smtpd.ColorMode, error) {
	for _, m := range []smtpd.ColorMode{smtpd.ColorAuto, smtpd.ColorAlways, smtpd.ColorNever} {
		if s == m.String() {
			return m, nil
		}
	}
	return smtpd.ColorAuto, fmt.Errorf("-color %q: want auto, always or never", s)
}

// colorsOn decides a -color flag for w: auto means a terminal, unless
// NO_COLOR is set.
func colorsOn(flag string, w any) (bool, error) {
	mode, err := parseColorMode(flag)
	switch {
	case err != nil:
		return false, err
	case mode == smtpd.ColorAuto:
		return isTerminal(w) && os.Getenv("NO_COLOR") == "", nil
	}
	return mode == smtpd.ColorAlways, nil
}
