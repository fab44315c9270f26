// Package webaddr says where the HTTP view of smtpd listens. The view has no
// login, so an address that gives only a port means the loopback interface,
// not every interface as it would for net.Listen: all interfaces must be
// asked for by name (0.0.0.0:8025, [::]:8025).
package webaddr

import (
	"net"
	"net/netip"
	"strings"
)

// Resolve returns the address to listen on for addr: "8025" and ":8025"
// become "127.0.0.1:8025"; an address with a host is kept as it is.
func Resolve(addr string) string {
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// Listen listens on TCP at Resolve(addr).
func Listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", Resolve(addr))
}

// IsLoopback reports whether a listener's address is on a loopback
// interface only.
func IsLoopback(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().IsLoopback()
}
