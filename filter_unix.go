//go:build unix

package smtpd

import (
	"os/exec"
	"syscall"
)

// inProcessGroup makes cmd the leader of a new process group, and makes
// cancelling it kill the whole group: a shell script's children die with
// it.
func inProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
