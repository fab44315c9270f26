//go:build unix

package check

import (
	"os/exec"
	"syscall"
)

// inOwnProcessGroup makes cmd the leader of a new process group, so that
// signalProcessGroup reaches whatever it starts.
func inOwnProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalProcessGroup sends SIGTERM (SIGKILL with kill) to cmd's process
// group.
func signalProcessGroup(cmd *exec.Cmd, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-cmd.Process.Pid, sig)
}
