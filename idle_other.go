//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package smtpd

import "net"

// waitReadable returns at once where peeking at a socket is not supported;
// the read that follows blocks with the read buffer held.
func waitReadable(conn net.Conn) error { return nil }
