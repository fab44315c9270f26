//go:build !linux

package cli

import (
	"os"
	"testing"
)

type terminal struct{ out *os.File }

func openTerminal(t *testing.T) *terminal {
	t.Skip("the terminal tests need a Linux pseudo-terminal")
	return nil
}

func (tty *terminal) output() string { return "" }
