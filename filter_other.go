//go:build !unix

package smtpd

import "os/exec"

// runInProcessGroup runs cmd where process groups are not available:
// cancelling it kills the program only.
func runInProcessGroup(cmd *exec.Cmd) error { return cmd.Run() }
