package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fuzz tests for the parsers of network input of the security layer: the PROXY
// header, the AUTH argument and SASL responses, and a whole session played
// from fuzzed bytes. Seed corpora are in testdata/fuzz/<name>/.

// FuzzProxyHeader checks that readProxyHeader never panics, never reads
// past the header, and that what it accepts means what it says: the
// addresses it returns, written again as a v1 and a v2 header, read back the
// same.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 56324 25\r\nEHLO x\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 56324 25\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))
	f.Add(proxyV2(0x21, 0x11, []byte{203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0, 25}, []byte{0x04, 0, 3, 'a', 'b', 'c'}))
	f.Add(proxyV2(0x20, 0x00, nil, nil))
	f.Add(proxyV2(0x21, 0x21, make([]byte, 36), nil))
	f.Add(proxyV2(0x21, 0x12, make([]byte, 12), nil))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), readBufferSize)
		h, err := readProxyHeader(br)
		rest, _ := io.ReadAll(br)
		n := len(data) - len(rest)
		if err != nil {
			return
		}
		header := data[:n]
		switch header[0] {
		case 'P':
			if n > maxProxyV1 || !bytes.HasSuffix(header, []byte("\r\n")) {
				t.Fatalf("v1 header %q accepted", header)
			}
		case '\r':
			if n < 16 || n != 16+int(binary.BigEndian.Uint16(header[14:16])) {
				t.Fatalf("v2 header of %d octets accepted, its length says %d", n, 16+int(binary.BigEndian.Uint16(header[14:16])))
			}
		default:
			t.Fatalf("header %q accepted", header)
		}
		if h.local {
			return
		}
		if !h.src.Addr().IsValid() || !h.dst.Addr().IsValid() || h.src.Addr().Is4() != h.dst.Addr().Is4() {
			t.Fatalf("accepted header %q gives %v → %v", header, h.src, h.dst)
		}
		for _, again := range [][]byte{formatProxyV1(h), formatProxyV2(h)} {
			br := bufio.NewReader(io.MultiReader(bytes.NewReader(again), strings.NewReader("tail")))
			h2, err := readProxyHeader(br)
			if err != nil || h2 != h {
				t.Fatalf("%q → %+v; rewritten as %q → %+v, %v", header, h, again, h2, err)
			}
			if tail, _ := io.ReadAll(br); string(tail) != "tail" {
				t.Fatalf("reading %q left %q, want the tail", again, tail)
			}
		}
	})
}

// proxyV2 builds a v2 header: signature, version/command, family, length,
// addresses and TLVs.
func proxyV2(verCmd, fam byte, addrs, tlvs []byte) []byte {
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}

func formatProxyV1(h proxyHeader) []byte {
	proto := "TCP6"
	if h.src.Addr().Is4() {
		proto = "TCP4"
	}
	return []byte("PROXY " + proto + " " + h.src.Addr().String() + " " + h.dst.Addr().String() + " " +
		itoa(h.src.Port()) + " " + itoa(h.dst.Port()) + "\r\n")
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func formatProxyV2(h proxyHeader) []byte {
	var addrs []byte
	fam := byte(0x21)
	if h.src.Addr().Is4() {
		fam = 0x11
		s, d := h.src.Addr().As4(), h.dst.Addr().As4()
		addrs = append(append(addrs, s[:]...), d[:]...)
	} else {
		s, d := h.src.Addr().As16(), h.dst.Addr().As16()
		addrs = append(append(addrs, s[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, h.src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, h.dst.Port())
	return proxyV2(0x21, fam, addrs, []byte{0x03, 0, 4, 1, 2, 3, 4}) // with a CRC32C TLV to skip
}

// The credentials the AUTH fuzz tests accept.
const (
	fuzzUser     = "alice"
	fuzzPassword = "s3cret pw"
)

// FuzzAuth plays an AUTH command's argument and the client's response lines
// (separated by '\n') through the server's SASL code. Authentication may
// only succeed with the right user and password, exchanges end within two
// challenges, and the traced form of the command never shows its initial
// response.
func FuzzAuth(f *testing.F) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + fuzzUser + "\x00" + fuzzPassword))
	f.Add("PLAIN "+plain, "")
	f.Add("PLAIN", plain)
	f.Add("plain =", "")
	f.Add("PLAIN", "*")
	f.Add("LOGIN", base64.StdEncoding.EncodeToString([]byte(fuzzUser))+"\n"+base64.StdEncoding.EncodeToString([]byte(fuzzPassword)))
	f.Add("LOGIN "+base64.StdEncoding.EncodeToString([]byte(fuzzUser)), base64.StdEncoding.EncodeToString([]byte(fuzzPassword)))
	f.Add("LOGIN", "!!!\n=")
	f.Add("PLAIN "+base64.StdEncoding.EncodeToString([]byte("bob\x00"+fuzzUser+"\x00"+fuzzPassword)), "")
	f.Add("CRAM-MD5", "")
	f.Fuzz(func(t *testing.T, arg, responses string) {
		var (
			calls   int
			success bool
		)
		check := func(identity, user, password string) error {
			calls++
			if (identity == "" || identity == user) && user == fuzzUser && password == fuzzPassword {
				success = true
				return nil
			}
			return ErrAuthFailed
		}
		mech, ir, err := parseAuthArg(arg)
		if err != nil {
			return
		}
		server := newSASLServer(mech, check)
		if server == nil {
			if mech == "PLAIN" || mech == "LOGIN" {
				t.Fatalf("mechanism %q refused", mech)
			}
			return
		}
		lines := strings.Split(responses, "\n")
		rounds := 0
		err = saslExchange(server, ir, func(challenge []byte) (string, error) {
			rounds++
			if rounds > len(lines) {
				return "", io.EOF
			}
			return lines[rounds-1], nil
		})
		if rounds > 2 {
			t.Fatalf("%d challenges", rounds)
		}
		if calls > 1 {
			t.Fatalf("the authenticator was called %d times in one exchange", calls)
		}
		if (err == nil) != success {
			t.Fatalf("exchange error %v, authenticator accepted: %v", err, success)
		}
		if _, resp, ok := strings.Cut(arg, " "); ok && resp != "" {
			line := "AUTH " + arg
			if red := redactCommand(line); strings.Contains(red, resp) && !strings.Contains("AUTH "+strings.ToUpper(mech)+" <redacted>", resp) {
				t.Fatalf("redactCommand(%q) = %q shows the initial response", line, red)
			}
		}
	})
}

// FuzzDecodeSASL checks that decodeSASL accepts only canonical base64 (or
// "="), and never returns nil without an error.
func FuzzDecodeSASL(f *testing.F) {
	f.Add("YWxpY2U=")
	f.Add("=")
	f.Add("YWxpY2U")
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		b, err := decodeSASL(line)
		if err != nil {
			return
		}
		if b == nil {
			t.Fatalf("decodeSASL(%q) = nil", line)
		}
		if line != "=" && base64.StdEncoding.EncodeToString(b) != line {
			t.Fatalf("decodeSASL(%q) accepted a non-canonical form", line)
		}
	})
}

// addrConn is a net.Conn with a chosen remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// syncWriter is a goroutine-safe buffer.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.b.String()
	w.b.Reset()
	return s
}

var (
	replyLineRE  = regexp.MustCompile(`^[2-5][0-9]{2}([ -].*)?$`)
	tracedAuthRE = regexp.MustCompile(`(?im)\] C: auth[ \t]+\S+[ \t]+(.*)$`)
)

// FuzzSession plays fuzzed client input against an in-process server with
// STARTTLS, AUTH (allowed without TLS, so the fuzzer reaches it) and a
// trusted PROXY source. The first byte chooses the connection: odd, it
// comes from the trusted proxy and the rest is written at once (the PROXY
// header first); even, from an ordinary client that waits for the greeting.
// The session must end once the input does, never panic, answer only in
// well-formed reply lines, and never trace an AUTH initial response.
func FuzzSession(f *testing.F) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + fuzzUser + "\x00" + fuzzPassword))
	f.Add([]byte("\x00EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("\x00EHLO c\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<a@b>\r\nQUIT\r\n"))
	f.Add([]byte("\x00EHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nczNjcmV0IHB3\r\nAUTH PLAIN\r\n*\r\n"))
	f.Add([]byte("\x00EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n"))
	f.Add([]byte("\x01PROXY TCP4 203.0.113.7 192.0.2.1 5000 25\r\n"))
	f.Add(append([]byte{1}, proxyV2(0x21, 0x11, []byte{203, 0, 113, 7, 192, 0, 2, 1, 0, 1, 0, 25}, nil)...))
	f.Add([]byte("\x00HELO c\r\nAUTH PLAIN =\r\nAUTH  PLAIN\tsecret\r\nPROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\n"))
	f.Add([]byte("\x00EHLO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME RET=HDRS ENVID=x+2By\r\nRCPT TO:<c@d> NOTIFY=SUCCESS ORCPT=rfc822;c@d\r\nBDAT 5\r\nQUIT\rBDAT 7 LAST\r\n\r\n.\r\nx\r\nDATA\r\n"))
	f.Add([]byte("\x00EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 100\r\nshort"))

	logs := &syncWriter{}
	trace := &syncWriter{}
	srv, err := NewServer(Config{
		Hostname:          "fuzz.test",
		DataDir:           f.TempDir(),
		Logger:            slog.New(slog.NewTextHandler(logs, nil)),
		Trace:             trace,
		Verbose:           true,
		TraceColor:        ColorNever,
		CommandTimeout:    2 * time.Second,
		TLSConfig:         fuzzTLSConfig(f),
		Authenticate:      fuzzAuthenticate,
		AllowInsecureAuth: true,
		AuthFailureDelay:  time.Nanosecond,
		ProxyFrom:         []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	trusted := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	other := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 40000}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		proxied := data[0]&1 == 1
		data = data[1:]
		// Loopback TCP rather than net.Pipe: the client must be able
		// to close its side and still read every reply.
		client, err := net.DialTCP("tcp", nil, l.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		remote := net.Addr(other)
		if proxied {
			remote = trusted
		}
		srv.startSession(addrConn{server, remote}, false)
		out := &syncWriter{}
		read := make(chan struct{})
		client.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(client)
		if !proxied {
			greeting, _ := br.ReadString('\n')
			out.Write([]byte(greeting))
		}
		go func() {
			io.Copy(out, br)
			close(read)
		}()
		client.Write(data)
		client.CloseWrite()
		<-read
		srv.wg.Wait()
		if l := logs.take(); strings.Contains(l, "panic") {
			t.Fatalf("session panicked:\n%s", l)
		}
		got := out.take()
		for _, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
			if line != "" && !replyLineRE.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		for _, m := range tracedAuthRE.FindAllStringSubmatch(trace.take(), -1) {
			// The trace shows a tab as \t: trailing blanks are not an
			// initial response.
			if rest := strings.TrimSpace(strings.ReplaceAll(m[1], `\t`, " ")); rest != "<redacted>" && rest != "" {
				t.Fatalf("traced AUTH line shows %q", m[0])
			}
		}
	})
}

func fuzzAuthenticate(ctx context.Context, user, password string) error {
	if user == fuzzUser && password == fuzzPassword {
		return nil
	}
	return ErrAuthFailed
}

// fuzzTLSConfig returns a server TLS configuration with a throw-away
// self-signed certificate.
func fuzzTLSConfig(tb testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"fuzz.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
