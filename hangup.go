package smtpd

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/tpe-protos/smtpd/internal/openfiles"
)

// The bounds of a graceful close (see Server.hangUp).
const (
	// lingerTime and lingerBytes bound how long, and how much of the
	// client's input, the server reads and throws away after its last
	// reply before it closes the connection.
	lingerTime  = time.Second
	lingerBytes = 64 << 10
	// maxLingering is how many connections may be in a graceful close at
	// once. Each keeps its file open for up to lingerTime after its session
	// ended, outside MaxConns; past this number the server closes at once.
	// The smtpd command counts them in its open files.
	maxLingering = openfiles.Lingering
	// closeNotifyTime bounds the write of a TLS close_notify alert.
	closeNotifyTime = 100 * time.Millisecond
)

// hangUp closes a connection the server is done with, so that what it wrote
// last reaches the client. Closing a TCP socket whose input has not all been
// read makes the kernel answer with a reset (RFC 1122 §4.2.2.13) rather than
// an orderly end, and the reset can destroy the reply still in flight or in
// the client's receive buffer: a client that pipelined its commands, or
// talked before the greeting, would see "connection reset" instead of the
// 421 or 554 that explains why. So the server first ends its own side (a TLS
// close_notify alert, then a TCP FIN after the reply), then reads and
// discards what the client still sends until the client closes too, for at
// most lingerTime and lingerBytes, and only then closes. A client that sends
// more than lingerBytes is not read further, but the close still waits for
// the end of lingerTime: meanwhile TCP flow control holds the client back,
// and it can read the reply before the reset comes. With drain false (the
// client has closed already) it only ends TLS and closes. Close cuts the
// wait short; Shutdown waits for it, within its bound.
func (srv *Server) hangUp(conn net.Conn, tlsConn *tls.Conn, drain bool) {
	defer conn.Close()
	if tlsConn != nil {
		// RFC 8446 §6.1, if the alert can go out at once.
		conn.SetWriteDeadline(time.Now().Add(closeNotifyTime))
		tlsConn.CloseWrite()
	}
	if drain {
		srv.linger(conn)
	}
}

// linger ends the server's side of a TCP connection and reads what the
// client still sends, within the bounds above (see hangUp).
func (srv *Server) linger(conn net.Conn) {
	hc, ok := conn.(interface{ CloseWrite() error })
	if !ok || srv.closing.Load() {
		return
	}
	if srv.lingering.Add(1) > maxLingering {
		srv.lingering.Add(-1)
		return
	}
	defer srv.lingering.Add(-1)
	if hc.CloseWrite() != nil {
		return // the connection is broken already
	}
	deadline := time.Now().Add(lingerTime)
	conn.SetReadDeadline(deadline)
	// After the deadline is set, or Close could be missed.
	stop := context.AfterFunc(srv.ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	n, _ := io.CopyN(io.Discard, conn, lingerBytes)
	srv.stats.bytesIn.Add(uint64(n))
	if n == lingerBytes {
		// The client is still sending. The close will reset the
		// connection; until the time is up, TCP flow control holds the
		// client back instead, and it can read the reply.
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-t.C:
		case <-srv.ctx.Done():
		}
	}
}
