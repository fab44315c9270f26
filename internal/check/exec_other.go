//go:build !unix

package check

import "os/exec"

// inOwnProcessGroup does nothing where there are no process groups.
func inOwnProcessGroup(*exec.Cmd) {}

// signalProcessGroup kills cmd's process (there is no gentle signal to
// send here); what it started is not reached.
func signalProcessGroup(cmd *exec.Cmd, kill bool) { cmd.Process.Kill() }
