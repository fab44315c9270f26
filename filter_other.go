//go:build !unix

package smtpd

import "os/exec"

// inProcessGroup does nothing where process groups are not available:
// cancelling cmd kills the program only.
func inProcessGroup(cmd *exec.Cmd) {}
