//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package smtpd

import "net"

// waitReadable returns at once where peeking at a socket is not supported.
func waitReadable(conn net.Conn) error { return nil }

// waitable is false where peeking at a socket is not supported: an idle
// session then blocks in its read, with its read buffer held.
func waitable(conn net.Conn) bool { return false }
