//go:build unix

package smtpd

import (
	"errors"
	"os/exec"
	"syscall"
)

// runInProcessGroup runs cmd as the leader of a new process group and kills
// the whole group once the leader exits, and when cmd is cancelled, so that
// no child of a shell script survives the run: neither a background job
// left running (it would outlive the server) nor one holding the output
// pipe open (Wait would wait for it).
//
// The group is killed while the exited leader is still a zombie, before
// Wait reaps it: its process ID, which is the group's, cannot be reused by
// an unrelated process until then.
func runInProcessGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	if err := cmd.Start(); err != nil {
		return err
	}
	if waitExited(cmd.Process.Pid) != nil {
		// No way to wait without reaping: kill what is left after,
		// accepting the tiny chance that the ID was reused meanwhile.
		err := cmd.Wait()
		killGroup(cmd.Process.Pid)
		return err
	}
	killGroup(cmd.Process.Pid)
	return cmd.Wait()
}

// killGroup kills every process of the group pgid.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil // the group is empty already
	}
	return err
}
