//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package smtpd

import "syscall"

// peekSocket reports whether the non-blocking socket fd has data to read,
// without reading it. EOF and errors are not data.
func peekSocket(fd uintptr) bool {
	var one [1]byte
	n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == nil && n > 0
}
