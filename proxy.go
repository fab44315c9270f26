package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The PROXY protocol (HAProxy, "The PROXY protocol, versions 1 & 2",
// proxy-protocol.txt of the HAProxy sources) lets a proxy or load balancer
// tell the server who the real client is, in a header at the very start of
// the connection. The server believes it only from Config.ProxyFrom.

// maxProxyHeaderTime bounds the wait for the header (or CommandTimeout if
// shorter). A proxy sends it at once, with the connection.
const maxProxyHeaderTime = 10 * time.Second

// maxProxyV1 is the longest version 1 header, CRLF included (spec §2.1).
const maxProxyV1 = 107

// proxyV2Sig starts every version 2 header (spec §2.2).
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeader is what a PROXY header says.
type proxyHeader struct {
	// local is set when the header gives no client address to use (v1
	// UNKNOWN, v2 LOCAL or a family other than IPv4/IPv6): the session
	// keeps the connection's own address, as the spec says.
	local    bool
	src, dst netip.AddrPort
}

var errNoProxyHeader = errors.New("proxy: no PROXY header")

// readProxyHeader reads a version 1 or 2 PROXY header from br, and nothing
// more: what follows stays in br. It never reads more than the header says
// (v2 at most 16+65535 octets, v1 at most 107); the caller bounds the time.
func readProxyHeader(br *bufio.Reader) (proxyHeader, error) {
	first, err := br.Peek(1)
	if err != nil {
		return proxyHeader{}, err
	}
	switch first[0] {
	case 'P':
		return readProxyV1(br)
	case '\r':
		return readProxyV2(br)
	}
	return proxyHeader{}, errNoProxyHeader
}

// readProxyV1 reads the text form (spec §2.1):
//
//	"PROXY" SP ("TCP4" / "TCP6") SP src SP dst SP sport SP dport CRLF
//	"PROXY" SP "UNKNOWN" *(anything but CRLF) CRLF
func readProxyV1(br *bufio.Reader) (proxyHeader, error) {
	var line []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return proxyHeader{}, err
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
		if len(line) >= maxProxyV1 {
			return proxyHeader{}, errors.New("proxy: v1 header too long")
		}
	}
	text, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return proxyHeader{}, errors.New("proxy: v1 header not ended by CRLF")
	}
	rest, ok := strings.CutPrefix(text, "PROXY ")
	if !ok {
		return proxyHeader{}, errNoProxyHeader
	}
	if rest == "UNKNOWN" || strings.HasPrefix(rest, "UNKNOWN ") {
		return proxyHeader{local: true}, nil
	}
	f := strings.Split(rest, " ")
	if len(f) != 5 || (f[0] != "TCP4" && f[0] != "TCP6") {
		return proxyHeader{}, fmt.Errorf("proxy: bad v1 header %q", visible(text))
	}
	src, err1 := netip.ParseAddr(f[1])
	dst, err2 := netip.ParseAddr(f[2])
	sport, err3 := parseProxyPort(f[3])
	dport, err4 := parseProxyPort(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return proxyHeader{}, fmt.Errorf("proxy: bad v1 header %q", visible(text))
	}
	v4 := f[0] == "TCP4"
	for _, a := range []netip.Addr{src, dst} {
		if a.Zone() != "" || a.Is4() != v4 {
			return proxyHeader{}, fmt.Errorf("proxy: bad v1 header %q: address not of %s", visible(text), f[0])
		}
	}
	return proxyHeader{src: netip.AddrPortFrom(src, sport), dst: netip.AddrPortFrom(dst, dport)}, nil
}

// parseProxyPort parses a v1 port: decimal, 0 to 65535, no leading zero.
func parseProxyPort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("bad port")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// readProxyV2 reads the binary form (spec §2.2): the 12-octet signature,
// version and command, family and transport, a 16-bit length, the
// addresses, then TLVs, which are skipped.
func readProxyV2(br *bufio.Reader) (proxyHeader, error) {
	hdr, err := br.Peek(16)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) && !bytes.HasPrefix(proxyV2Sig, hdr) {
			return proxyHeader{}, errNoProxyHeader
		}
		return proxyHeader{}, err
	}
	if !bytes.Equal(hdr[:12], proxyV2Sig) {
		return proxyHeader{}, errNoProxyHeader
	}
	verCmd, fam := hdr[12], hdr[13]
	length := int(binary.BigEndian.Uint16(hdr[14:16]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, fmt.Errorf("proxy: v2 header of version %d", verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd > 1 {
		return proxyHeader{}, fmt.Errorf("proxy: v2 command %d", cmd)
	}
	br.Discard(16)
	var addrLen int
	switch fam {
	case 0x11: // TCP over IPv4
		addrLen = 12
	case 0x21: // TCP over IPv6
		addrLen = 36
	}
	if cmd == 0 || addrLen == 0 {
		// LOCAL (a health check from the proxy itself), or an
		// unspecified or Unix family: keep the connection's address.
		// UDP is refused below, since SMTP is never relayed over it.
		if cmd == 1 && fam&0xf == 2 {
			return proxyHeader{}, errors.New("proxy: v2 header for a datagram transport")
		}
		return proxyHeader{local: true}, discardFull(br, length)
	}
	if length < addrLen {
		return proxyHeader{}, fmt.Errorf("proxy: v2 length %d too short for its addresses", length)
	}
	var b [36]byte
	if _, err := io.ReadFull(br, b[:addrLen]); err != nil {
		return proxyHeader{}, unexpected(err)
	}
	var h proxyHeader
	if addrLen == 12 {
		h.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[0:4])), binary.BigEndian.Uint16(b[8:10]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[10:12]))
	} else {
		h.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])), binary.BigEndian.Uint16(b[32:34]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])), binary.BigEndian.Uint16(b[34:36]))
	}
	// The TLVs (ALPN, authority, CRC32C, SSL details, …) are not used.
	return h, discardFull(br, length-addrLen)
}

// discardFull discards n octets of br, failing if they do not all come.
func discardFull(br *bufio.Reader, n int) error {
	_, err := br.Discard(n)
	return unexpected(err)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fromTrustedProxy reports whether the connection comes from an address in
// Config.ProxyFrom.
func (s *session) fromTrustedProxy() bool {
	if len(s.srv.set.proxyFrom) == 0 {
		return false
	}
	ip := remoteIP(s.remote)
	for _, p := range s.srv.set.proxyFrom {
		if ip.IsValid() && p.Contains(ip) {
			return true
		}
	}
	return false
}

// readProxy reads the PROXY header a trusted proxy starts with and makes
// the client it names the session's remote address. Any failure ends the
// session: a trusted proxy that sends something else is broken, and what
// follows cannot be trusted either.
func (s *session) readProxy() error {
	timeout := min(s.srv.set.commandTimeout, maxProxyHeaderTime)
	s.conn.SetReadDeadline(s.capDeadline(time.Now().Add(timeout)))
	h, err := readProxyHeader(s.br)
	if err != nil {
		return err
	}
	if h.local {
		s.event("PROXY header without a client address; using the proxy's")
		return nil
	}
	proxy := s.remote
	s.remote = net.TCPAddrFromAddrPort(netip.AddrPortFrom(h.src.Addr().Unmap(), h.src.Port()))
	s.event("client %s, through proxy %s", s.remote, proxy)
	return nil
}
