package smtpscript_test

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/smtpscript"
)

// TestScripts runs the scripts of testdata/script with nothing but the
// package's commands, as a project that uses them would.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                "testdata/script",
		RequireUniqueNames: true,
		Cmds:               smtpscript.Commands(),
		Setup:              smtpscript.Setup,
	})
}
