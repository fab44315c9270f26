package smtpd

import (
	"errors"

	"golang.org/x/sys/unix"
)

// waitExited waits until the child process pid has exited, and leaves it
// to be reaped by Wait (waitid's WNOWAIT, as os.Process does it on Linux).
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
