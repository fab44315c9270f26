//go:build unix && !linux

package smtpd

import "errors"

// waitExited cannot wait for a child without reaping it here (waitid stops
// at a stopped child on Darwin, as os notes): the caller kills the process
// group after Wait.
func waitExited(pid int) error { return errors.ErrUnsupported }
