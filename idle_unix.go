//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package smtpd

import (
	"net"
	"syscall"
)

// waitReadable blocks until conn has something to read (data, EOF or an
// error) or its read deadline passes, without a read buffer: an idle session
// then holds no buffer at all, which is most of its memory (see
// session.readCommand). It peeks at one byte with MSG_PEEK on the socket,
// which Go keeps in non-blocking mode, and lets the runtime's poller wait
// while the answer is EAGAIN. Connections that are not plain sockets return
// at once; the read that follows then blocks as usual.
func waitReadable(conn net.Conn) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc.Read(readable)
}

// readable is rc.Read's callback for waitReadable: done unless the peek
// would block. A plain function, not a closure, so that a parked session
// holds no allocation for it.
func readable(fd uintptr) bool {
	var one [1]byte
	_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EINTR
}

// waitable reports whether waitReadable can wait for conn: whether it is a
// socket.
func waitable(conn net.Conn) bool {
	_, ok := conn.(syscall.Conn)
	return ok
}
