package smtpd

import (
	"fmt"
	"io"
	"net"
)

// ListenAndServe listens on Config.Addr, and on Config.TLSAddr,
// Config.MetricsAddr and Config.HTTPAddr when they are set, and serves SMTP,
// implicit TLS, the management protocol and the HTTP view on them until
// Shutdown or Close.
//
// It binds every address before it serves any: when one cannot be bound,
// it closes those it has bound and returns the error. When serving one of
// them fails, it closes the others and returns that first error once none
// is served any more; after Shutdown or Close the error is
// ErrServerClosed. To learn the address of a ":0" listener, listen yourself
// and call Serve (and ServeTLS, ServeMetrics, ServeWeb) instead.
func (srv *Server) ListenAndServe() error {
	if err := srv.init(); err != nil {
		return err
	}
	if srv.shuttingDown() {
		return ErrServerClosed
	}
	bound, err := bindAll(srv.endpoints())
	if err != nil {
		return err
	}
	return serveAll(bound)
}

// An endpoint is an address ListenAndServe serves: the Config field that
// names it (for errors), the address ("" for none), and how to bind it.
type endpoint struct {
	field string
	addr  string
	bind  func(addr string) (boundEndpoint, error)
}

// A boundEndpoint is an endpoint's open socket and the function that
// serves it until the server closes (and closes it).
type boundEndpoint struct {
	io.Closer
	serve func() error
}

// endpoints lists what ListenAndServe serves, in the order it binds them.
// Serving one more kind of listener is one more line here.
func (srv *Server) endpoints() []endpoint {
	return []endpoint{
		{"Config.Addr", srv.set.addr, tcpEndpoint(srv.Serve)},
		{"Config.TLSAddr", srv.set.tlsAddr, tcpEndpoint(srv.ServeTLS)},
		{"Config.MetricsAddr", srv.set.metricsAddr, udpEndpoint(srv.ServeMetrics)},
		{"Config.HTTPAddr", srv.set.httpAddr, srv.webEndpoint},
	}
}

// tcpEndpoint binds a TCP address and serves it with serve.
func tcpEndpoint(serve func(net.Listener) error) func(string) (boundEndpoint, error) {
	return func(addr string) (boundEndpoint, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return boundEndpoint{}, err
		}
		return boundEndpoint{l, func() error { return serve(l) }}, nil
	}
}

// udpEndpoint binds a UDP address and serves it with serve.
func udpEndpoint(serve func(net.PacketConn) error) func(string) (boundEndpoint, error) {
	return func(addr string) (boundEndpoint, error) {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return boundEndpoint{}, err
		}
		return boundEndpoint{pc, func() error { return serve(pc) }}, nil
	}
}

// bindAll binds every endpoint that has an address; on the first failure it
// closes those already bound.
func bindAll(endpoints []endpoint) ([]boundEndpoint, error) {
	var bound []boundEndpoint
	for _, e := range endpoints {
		if e.addr == "" {
			continue
		}
		b, err := e.bind(e.addr)
		if err != nil {
			for _, b := range bound {
				b.Close()
			}
			return nil, fmt.Errorf("smtpd: %s: %w", e.field, err)
		}
		bound = append(bound, b)
	}
	return bound, nil
}

// serveAll serves every endpoint in a goroutine of its own until one of them
// returns, then closes the others, waits for them, and returns the first
// error.
func serveAll(bound []boundEndpoint) error {
	done := make(chan error, len(bound))
	for _, b := range bound {
		go func() { done <- b.serve() }()
	}
	first := <-done
	for _, b := range bound {
		b.Close()
	}
	for range len(bound) - 1 {
		<-done
	}
	return first
}
