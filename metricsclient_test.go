package smtpd_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// The management protocol end to end, through the public API: a real
// Server answering on a loopback UDP socket, and MetricsClient. The wire
// format is checked byte by byte in metrics_test.go; here the fake servers
// and the relay build their datagrams with a codec of their own (mcResponse),
// written from docs/metrics-protocol.md alone.

// mcWait bounds every wait of these tests.
const mcWait = 10 * time.Second

func mcKey(t *testing.T) []byte {
	key := make([]byte, 32)
	rand.Read(key)
	return key
}

// mcServer is a Server serving SMTP and the management protocol on
// loopback.
type mcServer struct {
	srv         *smtpd.Server
	smtpAddr    string
	metricsAddr string
}

// startMCServer starts a server with cfg (a temporary data directory and
// key unless given) on free loopback ports. The test's end closes it and
// checks that Serve and ServeMetrics returned ErrServerClosed.
func startMCServer(t *testing.T, cfg smtpd.Config) *mcServer {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.MetricsKey == nil {
		cfg.MetricsKey = mcKey(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	srv, err := smtpd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(l) }()
	go func() { served <- srv.ServeMetrics(pc) }()
	t.Cleanup(func() {
		srv.Close()
		for range 2 {
			select {
			case err := <-served:
				if !errors.Is(err, smtpd.ErrServerClosed) {
					t.Errorf("Serve or ServeMetrics returned %v, want ErrServerClosed", err)
				}
			case <-time.After(mcWait):
				t.Errorf("Serve or ServeMetrics still running %v after Close", mcWait)
				return
			}
		}
	})
	return &mcServer{srv: srv, smtpAddr: l.Addr().String(), metricsAddr: pc.LocalAddr().String()}
}

// dialMC returns a client for addr, closed at the test's end.
func dialMC(t *testing.T, addr string, key []byte, timeout time.Duration) *smtpd.MetricsClient {
	t.Helper()
	c, err := smtpd.DialMetrics(addr, key)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = timeout
	t.Cleanup(func() { c.Close() })
	return c
}

// mcResponse builds a response datagram (docs/metrics-protocol.md §3.2) with
// its own code.
func mcResponse(key []byte, status, version uint8, id uint16, cmd uint8, value uint64) []byte {
	b := make([]byte, 16, 32)
	binary.BigEndian.PutUint16(b, 0x534D)
	b[2], b[3] = version, status
	binary.BigEndian.PutUint16(b[4:], id)
	b[6] = cmd
	binary.BigEndian.PutUint64(b[8:], value)
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(b)[:32]
}

// requestFields decodes the fields of a request datagram that a fake server
// needs.
func requestFields(b []byte) (id uint16, cmd uint8, arg, timestamp uint64) {
	if len(b) != 40 {
		return 0, 0, 0, 0
	}
	return binary.BigEndian.Uint16(b[4:]), b[3], binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:])
}

func TestMetricsClientCommands(t *testing.T) {
	s := startMCServer(t, smtpd.Config{})
	c := dialMC(t, s.metricsAddr, s.srv.Config.MetricsKey, time.Second)
	ctx := t.Context()

	check := func(what string, got, want uint64, err error) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d, nil", what, got, err, want)
		}
	}
	v, err := c.HistoricalConnections(ctx)
	check("HistoricalConnections", v, 0, err)
	v, err = c.ConcurrentConnections(ctx)
	check("ConcurrentConnections", v, 0, err)
	v, err = c.BytesTransferred(ctx)
	check("BytesTransferred", v, 0, err)
	v, err = c.Messages(ctx)
	check("Messages", v, 0, err)
	v, err = c.MaxSize(ctx)
	check("MaxSize", v, smtpd.DefaultMaxMessageBytes, err)

	for _, on := range []bool{true, false, true} {
		if err := c.SetVerbose(ctx, on); err != nil {
			t.Errorf("SetVerbose(%v): %v", on, err)
		}
		if got, err := c.Verbose(ctx); err != nil || got != on {
			t.Errorf("Verbose() = %v, %v after SetVerbose(%v)", got, err, on)
		}
		if got := s.srv.RuntimeSettings().Verbose; got != on {
			t.Errorf("RuntimeSettings().Verbose = %v after SetVerbose(%v)", got, on)
		}
	}
	if err := c.SetMaxSize(ctx, 20480000); err != nil {
		t.Errorf("SetMaxSize(20480000): %v", err)
	}
	v, err = c.MaxSize(ctx)
	check("MaxSize after SetMaxSize", v, 20480000, err)
	if v, err := c.Do(ctx, smtpd.CmdSetMaxSize, 12345); err != nil || v != 12345 {
		t.Errorf("Do(set-max-size 12345) = %d, %v; want the new value", v, err)
	}
	up, err := c.Uptime(ctx)
	if err != nil || up < 0 || up > time.Minute {
		t.Errorf("Uptime() = %v, %v", up, err)
	}
	if on, err := c.Filter(ctx); err != nil || on {
		t.Errorf("Filter() = %v, %v; want false", on, err)
	}
	if err := c.SetFilter(ctx, false); err != nil {
		t.Errorf("SetFilter(false): %v", err)
	}

	statusErrors := []struct {
		what string
		err  error
		cmd  smtpd.Command
		want smtpd.Status
	}{
		{"SetMaxSize(0)", c.SetMaxSize(ctx, 0), smtpd.CmdSetMaxSize, smtpd.StatusInvalidArgument},
		{"SetFilter(true)", c.SetFilter(ctx, true), smtpd.CmdFilterOn, smtpd.StatusUnexpectedError},
		{"Do(13)", doErr(c.Do(ctx, 13, 0)), 13, smtpd.StatusInvalidCommand},
		{"Do(255)", doErr(c.Do(ctx, 255, 0)), 255, smtpd.StatusInvalidCommand},
	}
	for _, tc := range statusErrors {
		var se *smtpd.StatusError
		if !errors.As(tc.err, &se) || se.Status != tc.want || se.Command != tc.cmd {
			t.Errorf("%s: error %v, want *StatusError{%v, %v}", tc.what, tc.err, tc.cmd, tc.want)
		}
	}
	if got := s.srv.RuntimeSettings().MaxMessageBytes; got != 12345 {
		t.Errorf("size limit = %d after a refused SetMaxSize(0), want 12345", got)
	}

	if _, err := smtpd.DialMetrics(s.metricsAddr, make([]byte, 15)); err == nil {
		t.Errorf("DialMetrics accepted a 15-octet key")
	}
}

func doErr(_ uint64, err error) error { return err }

// TestMetricsClientConcurrentUse: a MetricsClient is safe for concurrent
// use.
func TestMetricsClientConcurrentUse(t *testing.T) {
	s := startMCServer(t, smtpd.Config{})
	c := dialMC(t, s.metricsAddr, s.srv.Config.MetricsKey, time.Second)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				n := uint64(1000 + i*10 + j)
				if v, err := c.Do(t.Context(), smtpd.CmdSetMaxSize, n); err != nil || v != n {
					t.Errorf("set-max-size %d = %d, %v", n, v, err)
				}
			}
		})
	}
	wg.Wait()
}

// lossyRelay forwards datagrams between a client and a server, dropping the
// first dropRequests requests and the first dropResponses responses. With
// holdFirst, it keeps the first response until the second arrives, then
// delivers the first and drops the second: a late answer.
type lossyRelay struct {
	client, up                  net.PacketConn
	server                      net.Addr
	dropRequests, dropResponses atomic.Int32
	holdFirst                   bool

	mu       sync.Mutex
	from     net.Addr // the client
	requests [][]byte // every request seen, in order
	held     []byte
	nResp    int
}

func newLossyRelay(t *testing.T, serverAddr string, dropRequests, dropResponses int, holdFirst bool) *lossyRelay {
	t.Helper()
	server, err := net.ResolveUDPAddr("udp", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	r := &lossyRelay{server: server, holdFirst: holdFirst}
	r.dropRequests.Store(int32(dropRequests))
	r.dropResponses.Store(int32(dropResponses))
	if r.client, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if r.up, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(r.forwardRequests)
	wg.Go(r.forwardResponses)
	t.Cleanup(func() {
		r.client.Close()
		r.up.Close()
		wg.Wait()
	})
	return r
}

func (r *lossyRelay) addr() string { return r.client.LocalAddr().String() }

func (r *lossyRelay) forwardRequests() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.client.ReadFrom(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.from = from
		r.requests = append(r.requests, bytes.Clone(buf[:n]))
		r.mu.Unlock()
		if r.dropRequests.Add(-1) >= 0 {
			continue
		}
		r.up.WriteTo(buf[:n], r.server)
	}
}

func (r *lossyRelay) forwardResponses() {
	buf := make([]byte, 2048)
	for {
		n, _, err := r.up.ReadFrom(buf)
		if err != nil {
			return
		}
		if r.dropResponses.Add(-1) >= 0 {
			continue
		}
		r.mu.Lock()
		r.nResp++
		out := buf[:n]
		switch {
		case r.holdFirst && r.nResp == 1:
			r.held = bytes.Clone(out)
			out = nil
		case r.holdFirst && r.nResp == 2:
			out = r.held
		}
		to := r.from
		r.mu.Unlock()
		if out != nil {
			r.client.WriteTo(out, to)
		}
	}
}

func (r *lossyRelay) seen() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.requests...)
}

// TestMetricsClientRetransmits puts a lossy relay between client and
// server: as long as one attempt gets through both ways, the call
// succeeds; every attempt carries a new identifier (the server would refuse
// a repeated pair as a replay).
func TestMetricsClientRetransmits(t *testing.T) {
	// At most 3 losses in the cases that must succeed: 2 attempts to
	// spare for a loaded machine where an answer takes over 300ms.
	const attempts = 6
	tests := []struct {
		name                        string
		dropRequests, dropResponses int
		holdFirst                   bool
		wantErr                     error
	}{
		{name: "no loss"},
		{name: "first request lost", dropRequests: 1},
		{name: "three requests lost", dropRequests: 3},
		{name: "first response lost", dropResponses: 1},
		{name: "three responses lost", dropResponses: 3},
		{name: "one of each lost", dropRequests: 1, dropResponses: 1},
		{name: "two of each lost", dropRequests: 2, dropResponses: 1},
		{name: "late answer to the first attempt", holdFirst: true},
		{name: "every request lost", dropRequests: attempts, wantErr: smtpd.ErrTimeout},
		{name: "every response lost", dropResponses: attempts, wantErr: smtpd.ErrTimeout},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startMCServer(t, smtpd.Config{})
			relay := newLossyRelay(t, s.metricsAddr, tc.dropRequests, tc.dropResponses, tc.holdFirst)
			c := dialMC(t, relay.addr(), s.srv.Config.MetricsKey, 300*time.Millisecond)
			c.Attempts = attempts
			want := uint64(5000 + i)
			v, err := c.Do(t.Context(), smtpd.CmdSetMaxSize, want)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Do = %d, %v; want %v", v, err, tc.wantErr)
				}
			} else if err != nil || v != want {
				t.Fatalf("Do(set-max-size %d) = %d, %v", want, v, err)
			}
			reqs := relay.seen()
			minSent := tc.dropRequests + tc.dropResponses + 1
			if tc.holdFirst {
				minSent = 2
			}
			if len(reqs) < min(minSent, attempts) || len(reqs) > attempts {
				t.Errorf("the client sent %d requests, want %d to %d", len(reqs), minSent, attempts)
			}
			ids := make(map[uint16]bool)
			var lastTS uint64
			for _, b := range reqs {
				id, cmd, arg, ts := requestFields(b)
				if ids[id] {
					t.Errorf("identifier %#x sent twice", id)
				}
				ids[id] = true
				if cmd != uint8(smtpd.CmdSetMaxSize) || arg != want {
					t.Errorf("retransmitted request has command %d argument %d", cmd, arg)
				}
				if ts < lastTS {
					t.Errorf("timestamps go backwards: %d after %d", ts, lastTS)
				}
				lastTS = ts
			}
			if tc.wantErr == nil {
				if got := s.srv.RuntimeSettings().MaxMessageBytes; got != int64(want) {
					t.Errorf("server size limit = %d, want %d", got, want)
				}
			}
		})
	}
}

// fakeServer answers each request datagram with reply(request).
func fakeServer(t *testing.T, reply func(req []byte) [][]byte) (addr string, received <-chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []byte, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := bytes.Clone(buf[:n])
			select {
			case ch <- req:
			default:
			}
			if reply != nil {
				for _, b := range reply(req) {
					pc.WriteTo(b, from)
				}
			}
		}
	})
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String(), ch
}

// TestMetricsClientIgnoresBadResponses: a response is taken only if its
// MAC verifies and its identifier and command are those of a request sent;
// everything else on the socket is ignored.
func TestMetricsClientIgnoresBadResponses(t *testing.T) {
	key := mcKey(t)
	other := mcKey(t)
	bogus := func(req []byte) [][]byte {
		id, cmd, _, _ := requestFields(req)
		badMAC := mcResponse(key, 0, 1, id, cmd, 666)
		badMAC[31] ^= 1
		badSig := mcResponse(key, 0, 1, id, cmd, 665)
		badSig[0] = 'X'
		return [][]byte{
			badMAC,
			mcResponse(key, 0, 1, id+1, cmd, 777),          // another identifier
			mcResponse(key, 0, 1, id, cmd+1, 888),          // another command
			mcResponse(key, 0, 2, id, cmd, 999),            // another version
			mcResponse(other, 0, 1, id, cmd, 555),          // another key
			mcResponse(key, 0, 1, id, cmd, 444)[:31],       // short
			append(mcResponse(key, 0, 1, id, cmd, 333), 0), // long
			badSig,
			req, // the request itself, echoed
			{},
		}
	}
	t.Run("ignored before the genuine answer", func(t *testing.T) {
		addr, _ := fakeServer(t, func(req []byte) [][]byte {
			id, cmd, _, _ := requestFields(req)
			return append(bogus(req), mcResponse(key, 0, 1, id, cmd, 42))
		})
		c := dialMC(t, addr, key, 2*time.Second)
		c.Attempts = 1
		if v, err := c.Do(t.Context(), smtpd.CmdMessages, 0); err != nil || v != 42 {
			t.Errorf("Do = %d, %v; want 42 from the only genuine answer", v, err)
		}
	})
	t.Run("only bogus answers", func(t *testing.T) {
		addr, received := fakeServer(t, bogus)
		c := dialMC(t, addr, key, 100*time.Millisecond)
		c.Attempts = 2
		if v, err := c.Do(t.Context(), smtpd.CmdMessages, 0); !errors.Is(err, smtpd.ErrTimeout) {
			t.Errorf("Do = %d, %v; want ErrTimeout", v, err)
		}
		if n := len(received); n != 2 {
			t.Errorf("the fake server received %d requests, want 2 (Attempts)", n)
		}
	})
}

// freeUDPAddr returns a loopback UDP address nobody listens on.
func freeUDPAddr(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// TestMetricsClientNoServer: with no answer, Do gives up with ErrTimeout
// after Attempts × Timeout, whether the port is closed (ICMP unreachable)
// or something there stays silent.
func TestMetricsClientNoServer(t *testing.T) {
	silent, _ := fakeServer(t, nil)
	for _, tc := range []struct{ name, addr string }{
		{"closed port", freeUDPAddr(t)},
		{"silent server", silent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialMC(t, tc.addr, mcKey(t), 100*time.Millisecond)
			c.Attempts = 3
			start := time.Now()
			v, err := c.Do(t.Context(), smtpd.CmdUptime, 0)
			elapsed := time.Since(start)
			if !errors.Is(err, smtpd.ErrTimeout) {
				t.Errorf("Do = %d, %v; want ErrTimeout", v, err)
			}
			var se *smtpd.StatusError
			if errors.As(err, &se) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Do error %v is a status or context error", err)
			}
			if elapsed < 300*time.Millisecond || elapsed > 300*time.Millisecond+2*time.Second {
				t.Errorf("Do gave up after %v, want about 3 × 100ms", elapsed)
			}
		})
	}
}

// TestMetricsClientContext: Do returns soon after its context ends, with
// the context's error, however long the attempts would wait.
func TestMetricsClientContext(t *testing.T) {
	t.Run("canceled while waiting", func(t *testing.T) {
		addr, received := fakeServer(t, nil)
		c := dialMC(t, addr, mcKey(t), mcWait)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-received // the request is out: Do is waiting for the answer
			cancel()
		}()
		start := time.Now()
		_, err := c.Do(ctx, smtpd.CmdMessages, 0)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Do error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Do returned %v after the request; want soon after the cancel", d)
		}
	})
	t.Run("client still usable after a cancel", func(t *testing.T) {
		s := startMCServer(t, smtpd.Config{})
		c := dialMC(t, s.metricsAddr, s.srv.Config.MetricsKey, time.Second)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c.Do(ctx, smtpd.CmdMessages, 0)
		if v, err := c.Do(t.Context(), smtpd.CmdGetMaxSize, 0); err != nil || v != smtpd.DefaultMaxMessageBytes {
			t.Errorf("Do after a canceled Do = %d, %v", v, err)
		}
	})
}

// TestMetricsClientCanceledContext: Do with a context already canceled
// returns at once with its error and sends nothing, as net/http's
// Client.Do and net.Dialer.DialContext do: a canceled set-max-size must
// not change the server. (Do sends the request first. Against a silent
// server its wait may then last the whole Timeout, when the context's
// AfterFunc clears the read deadline before Do sets it: seen once in 15
// runs with -race, too rare to test here.)
func TestMetricsClientCanceledContext(t *testing.T) {
	key := mcKey(t)
	addr, received := fakeServer(t, func(req []byte) [][]byte {
		id, cmd, _, _ := requestFields(req)
		return [][]byte{mcResponse(key, 0, 1, id, cmd, 42)}
	})
	c := dialMC(t, addr, key, 500*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 5 {
		start := time.Now()
		_, err := c.Do(ctx, smtpd.CmdSetMaxSize, 1)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Do error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Do with a canceled context returned after %v", d)
		}
	}
	// A live request afterwards: the server answers datagrams in the
	// order they came, so whatever the canceled calls sent is there
	// before it.
	if v, err := c.Do(t.Context(), smtpd.CmdMessages, 0); err != nil || v != 42 {
		t.Fatalf("Do with a live context = %d, %v", v, err)
	}
	var sent []string
	for len(received) > 0 {
		_, cmd, _, _ := requestFields(<-received)
		sent = append(sent, smtpd.Command(cmd).String())
	}
	if len(sent) != 1 || sent[0] != "messages" {
		t.Errorf("the server received %q; want only the live request (messages)", sent)
	}
}

// TestMetricsClientContextDeadline: when Do ends at its context's
// deadline, the error says context.DeadlineExceeded, and no attempt follows.
func TestMetricsClientContextDeadline(t *testing.T) {
	// The context's timer and the socket's read deadline expire
	// together; whichever Do sees first, the error must say
	// DeadlineExceeded and no attempt may follow. The race goes
	// either way, so the test runs it many times.
	addr, received := fakeServer(t, nil)
	c := dialMC(t, addr, mcKey(t), mcWait)
	const runs = 30
	var wrong, extra int
	for range runs {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		start := time.Now()
		_, err := c.Do(ctx, smtpd.CmdMessages, 0)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			wrong++
			t.Logf("Do error = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Do returned after %v; the deadline was 20ms", d)
		}
		// What the fake server got so far: one request is
		// right, more were sent after the deadline. (Only
		// logged: a datagram still in flight is counted in the
		// next run.)
		n := 0
		for len(received) > 0 {
			<-received
			n++
		}
		extra += max(n-1, 0)
	}
	if wrong > 0 {
		t.Errorf("%d of %d calls ending at the context's deadline did not return context.DeadlineExceeded", wrong, runs)
	}
	if extra > 0 {
		t.Logf("about %d requests were sent after a deadline", extra)
	}
}

// TestMetricsClientWrongKey: a client whose key is not the server's gets
// AUTH_FAILED (docs/metrics-protocol.md §9: metrics_client prints the status
// name and exits 1), not a timeout. The server signs its AUTH_FAILED with its
// own key, which the client lacks, so the client must recognise an
// unauthenticated AUTH_FAILED that matches its request
// (docs/metrics-protocol.md §9).
func TestMetricsClientWrongKey(t *testing.T) {
	s := startMCServer(t, smtpd.Config{})
	c := dialMC(t, s.metricsAddr, mcKey(t), 100*time.Millisecond)
	v, err := c.Do(t.Context(), smtpd.CmdSetMaxSize, 1)
	var se *smtpd.StatusError
	if !errors.As(err, &se) || se.Status != smtpd.StatusAuthFailed {
		t.Errorf("Do with the wrong key = %d, %v; want *StatusError AUTH_FAILED", v, err)
	}
	if got := s.srv.RuntimeSettings().MaxMessageBytes; got != smtpd.DefaultMaxMessageBytes {
		t.Errorf("a request with the wrong key set the size limit to %d", got)
	}
}

// countingConn counts the bytes a client writes and reads.
type countingConn struct {
	net.Conn
	in, out *atomic.Uint64 // written by the client (server's in), read by it
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.out.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.in.Add(uint64(n))
	return n, err
}

// quitToEOF ends an SMTP session and reads until the server has closed the
// connection. The server counts the bytes of its last reply just before it
// closes, so once the client saw the end of the connection every byte of
// the session is counted: the counters can be checked without waiting.
func quitToEOF(c *smtp.Client, conn net.Conn) error {
	id, err := c.Text.Cmd("QUIT")
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(221)
	c.Text.EndResponse(id)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return err
	}
	return conn.Close()
}

// TestCountersExactUnderConcurrency runs many SMTP sessions at once, some
// held open meanwhile, and checks the counters served by the management
// protocol exactly: connections, sessions, messages, and bytes, against
// what the clients wrote and read.
func TestCountersExactUnderConcurrency(t *testing.T) {
	held, sessions := 10, 50
	if testing.Short() {
		held, sessions = 3, 10
	}
	s := startMCServer(t, smtpd.Config{})
	mc := dialMC(t, s.metricsAddr, s.srv.Config.MetricsKey, time.Second)
	ctx := t.Context()
	var in, out atomic.Uint64

	dial := func(helo string) (*smtp.Client, net.Conn, error) {
		raw, err := net.DialTimeout("tcp", s.smtpAddr, mcWait)
		if err != nil {
			return nil, nil, err
		}
		raw.SetDeadline(time.Now().Add(mcWait))
		conn := &countingConn{Conn: raw, in: &in, out: &out}
		c, err := smtp.NewClient(conn, "mx.test")
		if err != nil {
			raw.Close()
			return nil, nil, err
		}
		if err := c.Hello(helo); err != nil {
			c.Close()
			return nil, nil, err
		}
		return c, conn, nil
	}

	// Sessions held open, greeted, while the others run. A session is
	// counted before its greeting is sent, so the count is exact now.
	type session struct {
		c    *smtp.Client
		conn net.Conn
	}
	var open []session
	for i := range held {
		c, conn, err := dial(fmt.Sprintf("held%d.test", i))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, session{c, conn})
	}
	if v, err := mc.ConcurrentConnections(ctx); err != nil || v != uint64(held) {
		t.Errorf("concurrent connections = %d, %v with %d sessions open; want %d", v, err, held, held)
	}

	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			c, conn, err := dial(fmt.Sprintf("client%d.test", i))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			err = c.Mail("bob@example.net")
			if err == nil {
				err = c.Rcpt(fmt.Sprintf("user%d@example.org", i%7))
			}
			var w io.WriteCloser
			if err == nil {
				w, err = c.Data()
			}
			if err == nil {
				fmt.Fprintf(w, "Subject: message %d\r\n\r\n%s\r\n", i, strings.Repeat("x", 37*i))
				err = w.Close()
			}
			if err == nil {
				err = quitToEOF(c, conn)
			}
			if err != nil {
				t.Errorf("session %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// A message is counted before its 250 is sent, a connection before
	// its greeting: these are exact at once.
	if v, err := mc.Messages(ctx); err != nil || v != uint64(sessions) {
		t.Errorf("messages = %d, %v; want %d", v, err, sessions)
	}
	if v, err := mc.HistoricalConnections(ctx); err != nil || v != uint64(held+sessions) {
		t.Errorf("historical connections = %d, %v; want %d", v, err, held+sessions)
	}
	if v, err := mc.ConcurrentConnections(ctx); err != nil || v < uint64(held) || v > uint64(held+sessions) {
		t.Errorf("concurrent connections = %d, %v; want %d, or a few more whose end is not yet counted", v, err, held)
	}

	for _, sess := range open {
		if err := quitToEOF(sess.c, sess.conn); err != nil {
			t.Errorf("held session: %v", err)
		}
	}
	if v, err := mc.BytesTransferred(ctx); err != nil || v != in.Load()+out.Load() {
		t.Errorf("bytes = %d, %v; want %d written + %d read by the clients = %d", v, err, in.Load(), out.Load(), in.Load()+out.Load())
	}

	// Shutdown waits for every session to end.
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.srv.Stats()
	if st.BytesIn != in.Load() || st.BytesOut != out.Load() {
		t.Errorf("Stats() bytes in/out = %d/%d; the clients wrote %d and read %d", st.BytesIn, st.BytesOut, in.Load(), out.Load())
	}
	if st.Connections != uint64(held+sessions) || st.Messages != uint64(sessions) || st.Sessions != 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

// TestCountersCountRefusedConnections: a connection turned away for
// MaxConns counts as a connection, and its 421 as bytes sent, but not as a
// session.
func TestCountersCountRefusedConnections(t *testing.T) {
	s := startMCServer(t, smtpd.Config{MaxConns: 1})
	mc := dialMC(t, s.metricsAddr, s.srv.Config.MetricsKey, time.Second)
	var in, out atomic.Uint64
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", s.smtpAddr, mcWait)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(mcWait))
		return &countingConn{Conn: conn, in: &in, out: &out}
	}
	first := dial()
	defer first.Close()
	c, err := smtp.NewClient(first, "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	second := dial()
	defer second.Close()
	refusal, err := io.ReadAll(second)
	if err != nil || !bytes.HasPrefix(refusal, []byte("421 4.3.2 ")) {
		t.Fatalf("second connection got %q, %v; want 421 4.3.2 and close", refusal, err)
	}
	if v, err := mc.HistoricalConnections(t.Context()); err != nil || v != 2 {
		t.Errorf("historical = %d, %v; want 2", v, err)
	}
	if v, err := mc.ConcurrentConnections(t.Context()); err != nil || v != 1 {
		t.Errorf("concurrent = %d, %v; want 1", v, err)
	}
	// The server counted its 421 before closing the second connection;
	// the first one's bytes are all counted once it is closed too.
	if err := quitToEOF(c, first); err != nil {
		t.Fatal(err)
	}
	if v, err := mc.BytesTransferred(t.Context()); err != nil || v != in.Load()+out.Load() {
		t.Errorf("bytes = %d, %v; want %d (the first session, and the 421)", v, err, in.Load()+out.Load())
	}
	if v, err := mc.HistoricalConnections(t.Context()); err != nil || v != 2 {
		t.Errorf("historical = %d, %v; want still 2", v, err)
	}
}

// mcRequest builds a request datagram (docs/metrics-protocol.md §3.1) with
// its own code.
func mcRequest(key []byte, cmd uint8, id uint16, arg uint64, timestamp time.Time) []byte {
	b := make([]byte, 24, 40)
	binary.BigEndian.PutUint16(b, 0x534D)
	b[2], b[3] = 1, cmd
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint64(b[8:], arg)
	binary.BigEndian.PutUint64(b[16:], uint64(timestamp.UnixMilli()))
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(b)[:40]
}

// TestServeMetricsDatagrams sends raw datagrams to ServeMetrics over UDP.
// The server answers in order, one at a time, so the datagrams that get
// no answer are followed by one that does: the answers that arrive show
// which were dropped, without waiting for a silence.
func TestServeMetricsDatagrams(t *testing.T) {
	s := startMCServer(t, smtpd.Config{})
	key := s.srv.Config.MetricsKey
	conn, err := net.Dial("udp", s.metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	valid := mcRequest(key, uint8(smtpd.CmdMessages), 1, 0, time.Now())
	long := func(n int, id uint16) []byte {
		b := make([]byte, n)
		copy(b, mcRequest(key, uint8(smtpd.CmdMessages), id, 0, time.Now()))
		return b
	}
	wrongSig := mcRequest(key, uint8(smtpd.CmdMessages), 2, 0, time.Now())
	wrongSig[0] = 'X'
	sends := []struct {
		name       string
		datagram   []byte
		wantStatus int // -1: no answer
	}{
		{"31 octets", valid[:31], -1},
		{"wrong signature", wrongSig, -1},
		{"3 octets", valid[:3], -1},
		{"1000 octets", long(1000, 3), int(smtpd.StatusInvalidRequestLength)},
		{"largest UDP datagram", long(65507, 4), int(smtpd.StatusInvalidRequestLength)},
		{"32 octets", long(32, 5), int(smtpd.StatusInvalidRequestLength)},
		{"valid", valid, int(smtpd.StatusOK)},
		{"same again: replay", valid, int(smtpd.StatusAuthFailed)},
		{"version 9", func() []byte { b := mcRequest(key, 0, 6, 0, time.Now()); b[2] = 9; return b }(), int(smtpd.StatusInvalidVersion)},
		{"stale", mcRequest(key, 0, 7, 0, time.Now().Add(-time.Minute)), int(smtpd.StatusAuthFailed)},
		{"command 200", mcRequest(key, 200, 8, 0, time.Now()), int(smtpd.StatusInvalidCommand)},
		{"uptime", mcRequest(key, uint8(smtpd.CmdUptime), 9, 0, time.Now()), int(smtpd.StatusOK)},
	}
	var want []string
	for _, snd := range sends {
		if _, err := conn.Write(snd.datagram); err != nil {
			t.Fatalf("%s: %v", snd.name, err)
		}
		if snd.wantStatus >= 0 {
			want = append(want, fmt.Sprintf("id %d status %d", binary.BigEndian.Uint16(snd.datagram[4:]), snd.wantStatus))
		}
	}
	conn.SetReadDeadline(time.Now().Add(mcWait))
	buf := make([]byte, 100)
	for _, w := range want {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for the answer %q: %v", w, err)
		}
		if n != 32 {
			t.Errorf("answer of %d octets, want 32", n)
		}
		h := hmac.New(sha256.New, key)
		h.Write(buf[:16])
		if !hmac.Equal(h.Sum(nil)[:16], buf[16:32]) {
			t.Errorf("answer %x: bad MAC", buf[:n])
		}
		if got := fmt.Sprintf("id %d status %d", binary.BigEndian.Uint16(buf[4:]), buf[3]); got != w {
			t.Errorf("answer %q, want %q", got, w)
		}
	}
}

// TestServeMetricsNeedsKey: without a key of at least 16 octets there is
// no management protocol.
func TestServeMetricsNeedsKey(t *testing.T) {
	srv, err := smtpd.NewServer(smtpd.Config{Hostname: "mx.test", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeMetrics(pc); err == nil || errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("ServeMetrics without a key = %v, want an error about the key", err)
	}
	if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); err == nil {
		t.Errorf("ServeMetrics left its PacketConn open")
	}
	if _, err := smtpd.NewServer(smtpd.Config{Hostname: "mx.test", DataDir: t.TempDir(), MetricsKey: make([]byte, 15)}); err == nil {
		t.Errorf("NewServer accepted a 15-octet MetricsKey")
	}
}
