package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// The byte-level tests of the management protocol
// (docs/metrics-protocol.md): the worked example of the document, golden
// vectors, malformed datagrams against (*Server).answer, the value of every
// command, the replay cache, and fuzzing of parseRequest and answer.

// exampleKey is the key of the worked example: the octets 0x00 to 0x1f.
func exampleKey() []byte {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	return key
}

// exampleTime is the timestamp of the worked example, 2026-11-27T14:33:20Z.
const exampleTime = 1795790000000

// exampleNow is the server's clock in the tests: the worked example's time.
var exampleNow = time.UnixMilli(exampleTime)

// newAnswerServer returns a server that is not serving, with the example
// key, for calling answer directly.
func newAnswerServer(t testing.TB) *Server {
	t.Helper()
	srv, err := NewServer(Config{
		Hostname:   "mx.test",
		DataDir:    t.TempDir(),
		MetricsKey: exampleKey(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// signed returns the wire form of a request signed with the example key.
func signed(cmd Command, id uint16, arg, timestamp uint64) []byte {
	return appendRequest(nil, request{command: cmd, id: id, argument: arg, timestamp: timestamp}, exampleKey())
}

// resign recomputes the MAC of a 40-octet request after a change.
func resign(b []byte) []byte {
	copy(b[requestMACOffset:], mac(exampleKey(), b[:requestMACOffset]))
	return b
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// docHexBlocks returns the octets of each fenced block tagged "hex" in the
// Markdown document: hex digits, white space ignored, "#" starts a comment.
func docHexBlocks(t *testing.T, name string) [][]byte {
	t.Helper()
	doc, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]byte
	var cur *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```hex":
			cur = new(strings.Builder)
		case cur != nil && strings.TrimSpace(line) == "```":
			b, err := hex.DecodeString(cur.String())
			if err != nil {
				t.Fatalf("%s: hex block ending at line %d: %v", name, n, err)
			}
			blocks = append(blocks, b)
			cur = nil
		case cur != nil:
			line, _, _ = strings.Cut(line, "#")
			cur.WriteString(strings.Join(strings.Fields(line), ""))
		}
	}
	if cur != nil {
		t.Fatalf("%s: unterminated hex block", name)
	}
	return blocks
}

// TestDocWorkedExample checks the worked example of
// docs/metrics-protocol.md against the code: the key, the request, the
// server's response, and the AUTH_FAILED answer to its replay.
func TestDocWorkedExample(t *testing.T) {
	blocks := docHexBlocks(t, "docs/metrics-protocol.md")
	if len(blocks) != 4 {
		t.Fatalf("found %d hex blocks in the document, want 4 (key, request, response, replay response)", len(blocks))
	}
	key, wire, wantResp, wantReplay := blocks[0], blocks[1], blocks[2], blocks[3]
	if !bytes.Equal(key, exampleKey()) {
		t.Errorf("key block = %x, want the octets 00..1f", key)
	}
	example := request{command: CmdSetMaxSize, id: 0x1234, argument: 20480000, timestamp: exampleTime}

	if got := appendRequest(nil, example, key); !bytes.Equal(got, wire) {
		t.Errorf("appendRequest(%+v) =\n%x\nthe document says\n%x", example, got, wire)
	}
	got, err := parseRequest(wire, key)
	if err != nil || got != example {
		t.Errorf("parseRequest(document request) = %+v, %v; want %+v, nil", got, err, example)
	}
	okResp := response{status: StatusOK, id: 0x1234, command: CmdSetMaxSize, value: 20480000}
	if got := appendResponse(nil, okResp, key); !bytes.Equal(got, wantResp) {
		t.Errorf("appendResponse(%+v) =\n%x\nthe document says\n%x", okResp, got, wantResp)
	}
	if got, err := parseResponse(wantResp, key); err != nil || got != okResp {
		t.Errorf("parseResponse(document response) = %+v, %v; want %+v, nil", got, err, okResp)
	}
	refused := response{status: StatusAuthFailed, id: 0x1234, command: CmdSetMaxSize}
	if got, err := parseResponse(wantReplay, key); err != nil || got != refused {
		t.Errorf("parseResponse(document replay response) = %+v, %v; want %+v, nil", got, err, refused)
	}

	// A server at the example's time: OK, then the replay is refused.
	srv := newAnswerServer(t)
	if got := srv.answer(wire, exampleNow); !bytes.Equal(got, wantResp) {
		t.Errorf("answer(document request) =\n%x\nthe document says\n%x", got, wantResp)
	}
	if got := srv.maxSize.Load(); got != 20480000 {
		t.Errorf("size limit after the example = %d, want 20480000", got)
	}
	srv.maxSize.Store(1000)
	if got := srv.answer(wire, exampleNow.Add(time.Second)); !bytes.Equal(got, wantReplay) {
		t.Errorf("answer(document request again) =\n%x\nthe document says\n%x", got, wantReplay)
	}
	if got := srv.maxSize.Load(); got != 1000 {
		t.Errorf("the replay changed the size limit to %d", got)
	}

	// "A server whose clock reads between 14:32:50Z and 14:33:50Z".
	for _, d := range []time.Duration{-30 * time.Second, 30 * time.Second} {
		if got := newAnswerServer(t).answer(wire, exampleNow.Add(d)); !bytes.Equal(got, wantResp) {
			t.Errorf("answer at the example's time %+v = %x, want the document's response", d, got)
		}
	}
}

// TestGoldenVectors pins the wire form of a few requests and responses,
// computed independently (Python's struct and hmac) with the example key.
func TestGoldenVectors(t *testing.T) {
	key := exampleKey()
	requests := []struct {
		name string
		req  request
		hex  string
	}{
		{"zeros", request{command: CmdHistoricalConnections}, "534d0100 00000000 0000000000000000 0000000000000000 8d9b09913d2cc8c754f502446fc3f820"},
		{"all ones", request{command: CmdUptime, id: 0xffff, argument: math.MaxUint64, timestamp: math.MaxInt64}, "534d0107 ffff0000 ffffffffffffffff 7fffffffffffffff 76376d2fafd83cc296d195913c443ba6"},
		{"verbose-on", request{command: CmdVerboseOn, id: 0x0102, timestamp: 1700000000000}, "534d0103 01020000 0000000000000000 0000018bcfe56800 41faff755d73268cf042c7af39f1b2af"},
	}
	for _, tc := range requests {
		t.Run("request/"+tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			if got := appendRequest(nil, tc.req, key); !bytes.Equal(got, want) {
				t.Errorf("appendRequest = %x, want %x", got, want)
			}
			// appendRequest appends: a prefix stays, the MAC covers only the request.
			if got := appendRequest([]byte("xyz"), tc.req, key); !bytes.Equal(got, append([]byte("xyz"), want...)) {
				t.Errorf("appendRequest after a prefix = %x, want xyz + %x", got, want)
			}
			if got, err := parseRequest(want, key); err != nil || got != tc.req {
				t.Errorf("parseRequest = %+v, %v; want %+v, nil", got, err, tc.req)
			}
		})
	}
	responses := []struct {
		name string
		resp response
		hex  string
	}{
		{"invalid length", response{status: StatusInvalidRequestLength, id: 0xbeef, command: CmdFilterOff}, "534d0104 beef0c00 0000000000000000 b0fb8ef6a3e3f7f78a87806f89ccd88f"},
		{"uptime", response{status: StatusOK, id: 0xffff, command: CmdUptime, value: 0x0123456789abcdef}, "534d0100 ffff0700 0123456789abcdef 32163a53f20c97a99a5990a9c6ea9114"},
		{"invalid command", response{status: StatusInvalidCommand, id: 1, command: 255}, "534d0103 0001ff00 0000000000000000 4774c6dc0985443a35e1a5e8c91833a5"},
	}
	for _, tc := range responses {
		t.Run("response/"+tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			if got := appendResponse(nil, tc.resp, key); !bytes.Equal(got, want) {
				t.Errorf("appendResponse = %x, want %x", got, want)
			}
			if got := appendResponse([]byte("xyz"), tc.resp, key); !bytes.Equal(got, append([]byte("xyz"), want...)) {
				t.Errorf("appendResponse after a prefix = %x, want xyz + %x", got, want)
			}
			if got, err := parseResponse(want, key); err != nil || got != tc.resp {
				t.Errorf("parseResponse = %+v, %v; want %+v, nil", got, err, tc.resp)
			}
		})
	}
}

// TestParseResponseRejects checks that a client-side parse refuses what is
// not a genuine response.
func TestParseResponseRejects(t *testing.T) {
	key := exampleKey()
	good := appendResponse(nil, response{status: StatusOK, id: 7, command: CmdMessages, value: 3}, key)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name    string
		b       []byte
		wantErr error
	}{
		{"empty", nil, errBadLength},
		{"short", good[:31], errBadLength},
		{"long", append(bytes.Clone(good), 0), errBadLength},
		{"a request", signed(CmdMessages, 7, 0, exampleTime), errBadLength},
		{"signature", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), errDrop},
		{"version", mutate(func(b []byte) []byte { b[2] = 2; return b }), errBadVersion},
		{"value changed", mutate(func(b []byte) []byte { b[15] ^= 1; return b }), errBadMAC},
		{"MAC changed", mutate(func(b []byte) []byte { b[31] ^= 1; return b }), errBadMAC},
		{"other key", appendResponse(nil, response{status: StatusOK, id: 7, command: CmdMessages, value: 3}, []byte("another key, 16+ octets")), errBadMAC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseResponse(tc.b, key); !errors.Is(err, tc.wantErr) {
				t.Errorf("parseResponse(%x) error = %v, want %v", tc.b, err, tc.wantErr)
			}
		})
	}
}

// drop stands for "no answer at all" in the tables below.
const drop = Status(255)

// TestAnswerMalformed sends one datagram each to a fresh server and checks
// the status of the answer, or that there is none. Every answer must be a
// genuine 32-octet response, no larger than the datagram, echoing its
// identifier and command; a refused request must change nothing.
func TestAnswerMalformed(t *testing.T) {
	const id = 0xabcd
	valid := func() []byte { return signed(CmdSetMaxSize, id, 12345, exampleTime) }
	with := func(f func(b []byte) []byte) []byte { return f(valid()) }
	ts := func(d time.Duration) []byte {
		return signed(CmdSetMaxSize, id, 12345, uint64(exampleNow.Add(d).UnixMilli()))
	}
	wrongVersion := func(n int) []byte {
		b := append(valid(), make([]byte, 100)...)[:n]
		b[2] = 2
		return b
	}

	tests := []struct {
		name     string
		datagram []byte
		want     Status
	}{
		// Length, signature and version.
		{"empty", nil, drop},
		{"1 octet", []byte{0x53}, drop},
		{"signature only", []byte{0x53, 0x4d}, drop},
		{"signature and version only", []byte{0x53, 0x4d, 1}, drop},
		{"4 octets", valid()[:4], drop},
		{"31 octets, valid signature and version", valid()[:31], drop},
		{"32 octets, valid signature and version", valid()[:32], StatusInvalidRequestLength},
		{"39 octets", valid()[:39], StatusInvalidRequestLength},
		{"41 octets", append(valid(), 0), StatusInvalidRequestLength},
		{"80 octets (the read buffer)", append(valid(), valid()...), StatusInvalidRequestLength},
		{"too long, 1500 octets", append(valid(), make([]byte, 1460)...), StatusInvalidRequestLength},
		{"31 octets, wrong version", wrongVersion(31), drop},
		{"32 octets, wrong version", wrongVersion(32), drop},
		{"39 octets, wrong version", wrongVersion(39), drop},
		{"41 octets, wrong version", wrongVersion(41), drop},
		{"wrong signature", with(func(b []byte) []byte { b[0], b[1] = 0x4d, 0x53; return resign(b) }), drop},
		{"wrong signature, second octet", with(func(b []byte) []byte { b[1] = 0; return resign(b) }), drop},
		{"wrong signature, 32 octets", with(func(b []byte) []byte { b[0] = 0; return b[:32] }), drop},
		{"40 zero octets", make([]byte, 40), drop},
		{"version 0", with(func(b []byte) []byte { b[2] = 0; return resign(b) }), StatusInvalidVersion},
		{"version 2", with(func(b []byte) []byte { b[2] = 2; return resign(b) }), StatusInvalidVersion},
		{"version 255, bad MAC too", with(func(b []byte) []byte { b[2] = 255; return b }), StatusInvalidVersion},

		// The MAC.
		{"bad MAC, last octet", with(func(b []byte) []byte { b[39] ^= 0x80; return b }), StatusAuthFailed},
		{"bad MAC, zeros", with(func(b []byte) []byte { clear(b[24:]); return b }), StatusAuthFailed},
		{"argument changed after signing", with(func(b []byte) []byte { b[15] ^= 1; return b }), StatusAuthFailed},
		{"command changed after signing", with(func(b []byte) []byte { b[3] = byte(CmdVerboseOn); return b }), StatusAuthFailed},
		{"reserved changed after signing", with(func(b []byte) []byte { b[7] = 1; return b }), StatusAuthFailed},
		{"signed with another key", appendRequest(nil, request{command: CmdSetMaxSize, id: id, argument: 12345, timestamp: exampleTime}, []byte("0123456789abcdef0123456789abcdef")), StatusAuthFailed},

		// The timestamp window: 30 s either way, inclusive.
		{"timestamp now", ts(0), StatusOK},
		{"timestamp 30 s old, the edge", ts(-30 * time.Second), StatusOK},
		{"timestamp 30 s ahead, the edge", ts(30 * time.Second), StatusOK},
		{"timestamp 30.001 s old", ts(-30*time.Second - time.Millisecond), StatusAuthFailed},
		{"timestamp 30.001 s ahead", ts(30*time.Second + time.Millisecond), StatusAuthFailed},
		{"timestamp 31 s old", ts(-31 * time.Second), StatusAuthFailed},
		{"timestamp 31 s ahead", ts(31 * time.Second), StatusAuthFailed},
		{"timestamp 0", signed(CmdSetMaxSize, id, 12345, 0), StatusAuthFailed},
		{"timestamp MaxInt64", signed(CmdSetMaxSize, id, 12345, math.MaxInt64), StatusAuthFailed},
		{"timestamp MaxUint64", signed(CmdSetMaxSize, id, 12345, math.MaxUint64), StatusAuthFailed},
		{"timestamp in seconds, not milliseconds", signed(CmdSetMaxSize, id, 12345, exampleTime/1000), StatusAuthFailed},

		// Commands and arguments.
		{"unknown command 13", signed(13, id, 0, exampleTime), StatusInvalidCommand},
		{"unknown command 255", signed(255, id, 0, exampleTime), StatusInvalidCommand},
		{"set-max-size 0", signed(CmdSetMaxSize, id, 0, exampleTime), StatusInvalidArgument},
		{"set-max-size MaxInt64+1", signed(CmdSetMaxSize, id, math.MaxInt64+1, exampleTime), StatusInvalidArgument},
		{"set-max-size MaxUint64", signed(CmdSetMaxSize, id, math.MaxUint64, exampleTime), StatusInvalidArgument},
		{"set-max-size MaxInt64", signed(CmdSetMaxSize, id, math.MaxInt64, exampleTime), StatusOK},
		{"set-max-size 1", signed(CmdSetMaxSize, id, 1, exampleTime), StatusOK},
		{"filter-on without a filter", signed(CmdFilterOn, id, 0, exampleTime), StatusUnexpectedError},
		{"argument ignored by messages", signed(CmdMessages, id, math.MaxUint64, exampleTime), StatusOK},
		{"reserved octets ignored", with(func(b []byte) []byte { b[6], b[7] = 0xff, 0xff; return resign(b) }), StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newAnswerServer(t)
			before := srv.maxSize.Load()
			datagram := bytes.Clone(tc.datagram)
			got := srv.answer(datagram, exampleNow)
			if !bytes.Equal(datagram, tc.datagram) {
				t.Errorf("answer modified the datagram")
			}
			if tc.want == drop {
				if got != nil {
					t.Fatalf("answer(%d octets %x) = %x, want no answer", len(tc.datagram), tc.datagram, got)
				}
				return
			}
			if got == nil {
				t.Fatalf("answer(%d octets %x) = no answer, want %v", len(tc.datagram), tc.datagram, tc.want)
			}
			if len(got) != responseSize || len(got) > len(tc.datagram) {
				t.Errorf("answer is %d octets for a datagram of %d; want %d and no more than the datagram", len(got), len(tc.datagram), responseSize)
			}
			resp, err := parseResponse(got, exampleKey())
			if err != nil {
				t.Fatalf("parseResponse(answer %x): %v", got, err)
			}
			if resp.status != tc.want {
				t.Errorf("status = %v, want %v", resp.status, tc.want)
			}
			if wantID := binary.BigEndian.Uint16(tc.datagram[4:]); resp.id != wantID {
				t.Errorf("identifier = %#x, want %#x (echoed)", resp.id, wantID)
			}
			if resp.command != Command(tc.datagram[3]) {
				t.Errorf("command = %d, want %d (echoed)", resp.command, tc.datagram[3])
			}
			wantSize := before
			if resp.status == StatusOK {
				if resp.command == CmdSetMaxSize {
					wantSize = int64(binary.BigEndian.Uint64(tc.datagram[8:]))
				}
			} else if resp.value != 0 {
				t.Errorf("value = %d with status %v, want 0", resp.value, resp.status)
			}
			if got := srv.maxSize.Load(); got != wantSize {
				t.Errorf("size limit = %d after the request, want %d", got, wantSize)
			}
		})
	}
}

// TestAnswerReplay checks the replay rule: an (identifier, timestamp) pair
// runs once; a replay gets AUTH_FAILED and does not run the command again;
// the same identifier with another timestamp, or another identifier with
// the same timestamp, is a new request.
func TestAnswerReplay(t *testing.T) {
	srv := newAnswerServer(t)
	step := func(what string, datagram []byte, now time.Time, want Status, wantVerbose bool) {
		t.Helper()
		resp, err := parseResponse(srv.answer(datagram, now), exampleKey())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.status != want {
			t.Errorf("%s: status %v, want %v", what, resp.status, want)
		}
		if got := srv.verbose.Load(); got != wantVerbose {
			t.Errorf("%s: verbose = %v, want %v", what, got, wantVerbose)
		}
	}
	on := signed(CmdVerboseOn, 7, 0, exampleTime)
	step("verbose-on", on, exampleNow, StatusOK, true)
	step("verbose-off, another id, same timestamp", signed(CmdVerboseOff, 8, 0, exampleTime), exampleNow, StatusOK, false)
	step("verbose-on replayed", on, exampleNow, StatusAuthFailed, false)
	step("verbose-on replayed 29 s later", on, exampleNow.Add(29*time.Second), StatusAuthFailed, false)
	step("verbose-on replayed 31 s later", on, exampleNow.Add(31*time.Second), StatusAuthFailed, false)
	step("verbose-on, same id, timestamp +1 ms", signed(CmdVerboseOn, 7, 0, exampleTime+1), exampleNow, StatusOK, true)

	// A refused command still uses up its pair.
	zero := signed(CmdSetMaxSize, 9, 0, exampleTime)
	step("set-max-size 0", zero, exampleNow, StatusInvalidArgument, true)
	step("set-max-size 0 replayed", zero, exampleNow, StatusAuthFailed, true)

	// A forged datagram (bad MAC) must not use up the pair of a genuine
	// request: otherwise anyone could block requests they can predict.
	genuine := signed(CmdVerboseOff, 10, 0, exampleTime)
	forged := bytes.Clone(genuine)
	forged[39] ^= 1
	step("forged verbose-off", forged, exampleNow, StatusAuthFailed, true)
	step("genuine verbose-off with the same pair", genuine, exampleNow, StatusOK, false)

	// A request refused for its timestamp is not remembered either: the
	// pair is accepted when the clock comes within 30 s of it.
	early := signed(CmdVerboseOn, 11, 0, uint64(exampleNow.Add(40*time.Second).UnixMilli()))
	step("verbose-on 40 s ahead", early, exampleNow, StatusAuthFailed, false)
	step("the same 15 s later", early, exampleNow.Add(15*time.Second), StatusOK, true)
}

// TestReplayCacheBounds fills the replay cache: it refuses new pairs when
// full of pairs inside the window, and forgets them once they leave it.
func TestReplayCacheBounds(t *testing.T) {
	var g replayGuard
	if !g.admit(0, exampleTime, exampleNow) {
		t.Fatalf("the first pair was refused")
	}
	// Filling the cache through admit is quadratic once it is half full
	// (each admit scans it), so the test fills it directly.
	for i := 1; i < maxReplayEntries; i++ {
		g.seen[replayKey{uint16(i), exampleTime + 1}] = exampleNow.Add(replayWindow)
	}
	if g.admit(1, exampleTime-1, exampleNow) {
		t.Errorf("a new pair was admitted into a full cache")
	}
	later := exampleNow.Add(31 * time.Second)
	if !g.admit(1, uint64(later.UnixMilli()), later) {
		t.Errorf("a new pair was refused once the old ones left the window")
	}
	if n := len(g.seen); n != 1 {
		t.Errorf("cache holds %d pairs after forgetting, want 1", n)
	}
}

// TestCommandValues runs every command on a server whose counters were set
// beforehand and checks each value.
func TestCommandValues(t *testing.T) {
	srv := newAnswerServer(t)
	srv.stats.connections.Store(11)
	srv.stats.sessions.Store(3)
	srv.stats.bytesIn.Store(100)
	srv.stats.bytesOut.Store(23)
	srv.stats.messages.Store(5)
	srv.started = time.Now().Add(-90*time.Second - 500*time.Millisecond)

	tests := []struct {
		cmd    Command
		arg    uint64
		status Status
		value  uint64
	}{
		{CmdHistoricalConnections, 0, StatusOK, 11},
		{CmdConcurrentConnections, 0, StatusOK, 3},
		{CmdBytesTransferred, 0, StatusOK, 123},
		{CmdVerboseStatus, 0, StatusOK, 0},
		{CmdVerboseOn, 0, StatusOK, 1},
		{CmdVerboseStatus, 0, StatusOK, 1},
		{CmdVerboseOn, 0, StatusOK, 1},
		{CmdVerboseOff, 0, StatusOK, 0},
		{CmdVerboseStatus, 0, StatusOK, 0},
		{CmdMessages, 0, StatusOK, 5},
		{CmdUptime, 0, StatusOK, 90},
		{CmdGetMaxSize, 0, StatusOK, DefaultMaxMessageBytes},
		{CmdSetMaxSize, 20480000, StatusOK, 20480000},
		{CmdGetMaxSize, 0, StatusOK, 20480000},
		{CmdSetMaxSize, 0, StatusInvalidArgument, 0},
		{CmdGetMaxSize, 0, StatusOK, 20480000},
		{CmdFilterStatus, 0, StatusOK, 0},
		{CmdFilterOn, 0, StatusUnexpectedError, 0},
		{CmdFilterStatus, 0, StatusOK, 0},
		{CmdFilterOff, 0, StatusOK, 0},
		{CmdFilterStatus, 0, StatusOK, 0},
		{13, 0, StatusInvalidCommand, 0},
	}
	for i, tc := range tests {
		now := time.Now()
		got := srv.answer(signed(tc.cmd, uint16(i), tc.arg, uint64(now.UnixMilli())), now)
		resp, err := parseResponse(got, exampleKey())
		if err != nil {
			t.Fatalf("%v: %v", tc.cmd, err)
		}
		if resp.status != tc.status || resp.value != tc.value || resp.id != uint16(i) || resp.command != tc.cmd {
			t.Errorf("step %d, %v %d: got %+v, want status %v value %d", i, tc.cmd, tc.arg, resp, tc.status, tc.value)
		}
	}
	// The counters read by the protocol are those Stats reports, and
	// the settings it changed those RuntimeSettings reports.
	st := srv.Stats()
	if st.Connections != 11 || st.Sessions != 3 || st.BytesIn+st.BytesOut != 123 || st.Messages != 5 {
		t.Errorf("Stats() = %+v, disagrees with the protocol's values", st)
	}
	if now := srv.RuntimeSettings(); now.MaxMessageBytes != 20480000 || now.Verbose || now.Filter {
		t.Errorf("RuntimeSettings() = %+v, disagrees with the protocol's values", now)
	}
}

// TestCommandAndStatusNames checks the names shared by metrics_client,
// MetricsClient and the documentation.
func TestCommandAndStatusNames(t *testing.T) {
	wantCmds := []string{"historical", "concurrent", "bytes", "verbose-on", "verbose-off", "verbose", "messages", "uptime", "max-size", "set-max-size", "filter", "filter-on", "filter-off"}
	cmds := Commands()
	if len(cmds) != len(wantCmds) {
		t.Fatalf("Commands() has %d commands, want %d", len(cmds), len(wantCmds))
	}
	for i, c := range cmds {
		if int(c) != i || c.String() != wantCmds[i] {
			t.Errorf("Commands()[%d] = %d %q, want %d %q", i, c, c, i, wantCmds[i])
		}
		if p, err := ParseCommand(wantCmds[i]); err != nil || p != c {
			t.Errorf("ParseCommand(%q) = %v, %v", wantCmds[i], p, err)
		}
		if c.TakesArgument() != (c == CmdSetMaxSize) {
			t.Errorf("%v.TakesArgument() = %v", c, c.TakesArgument())
		}
	}
	if got := Command(13).String(); got != "Command(13)" {
		t.Errorf("Command(13).String() = %q", got)
	}
	if _, err := ParseCommand("HISTORICAL"); err == nil {
		t.Errorf("ParseCommand is case-insensitive; the names are exact")
	}
	wantStatus := []string{"OK", "AUTH_FAILED", "INVALID_VERSION", "INVALID_COMMAND", "INVALID_REQUEST_LENGTH", "UNEXPECTED_ERROR", "INVALID_ARGUMENT"}
	for i, name := range wantStatus {
		if got := Status(i).String(); got != name {
			t.Errorf("Status(%d) = %q, want %q", i, got, name)
		}
	}
	if got := Status(7).String(); got != "Status(7)" {
		t.Errorf("Status(7).String() = %q", got)
	}
	err := error(&StatusError{Command: CmdSetMaxSize, Status: StatusInvalidArgument})
	if got := err.Error(); !strings.Contains(got, "set-max-size") || !strings.Contains(got, "INVALID_ARGUMENT") {
		t.Errorf("StatusError.Error() = %q, want the command and status names", got)
	}
}

// fuzzSeeds are the datagrams every fuzz target starts from (the committed
// corpus under testdata/fuzz adds more).
func fuzzSeeds() [][]byte {
	valid := signed(CmdSetMaxSize, 0x1234, 20480000, exampleTime)
	badVersion := bytes.Clone(valid)
	badVersion[2] = 2
	return [][]byte{
		nil,
		{0x53, 0x4d, 1},
		valid,
		valid[:31],
		valid[:32],
		append(bytes.Clone(valid), 0),
		badVersion,
		make([]byte, 40),
	}
}

// checkAnswer checks what answer may do with any datagram: nothing, or one
// genuine 32-octet response no larger than the datagram, echoing its
// identifier and command; exactly when parseRequest says to drop it. It
// returns the answer's status, or drop.
func checkAnswer(t *testing.T, srv *Server, data []byte, now time.Time) Status {
	_, perr := parseRequest(data, exampleKey())
	got := srv.answer(data, now)
	if got == nil {
		if !errors.Is(perr, errDrop) {
			t.Fatalf("answer(%x) = nil, but parseRequest error is %v", data, perr)
		}
		return drop
	}
	if errors.Is(perr, errDrop) {
		t.Fatalf("answer(%x) = %x, but parseRequest says drop", data, got)
	}
	if len(got) != responseSize || len(got) > len(data) {
		t.Fatalf("answer to %d octets is %d octets", len(data), len(got))
	}
	resp, err := parseResponse(got, exampleKey())
	if err != nil {
		t.Fatalf("answer(%x) = %x: %v", data, got, err)
	}
	if resp.id != binary.BigEndian.Uint16(data[4:]) || resp.command != Command(data[3]) {
		t.Fatalf("answer(%x) = %+v: identifier or command not echoed", data, resp)
	}
	if resp.status != StatusOK && resp.value != 0 {
		t.Fatalf("answer(%x) = %+v: a value with an error status", data, resp)
	}
	return resp.status
}

// FuzzParseRequest feeds arbitrary datagrams to parseRequest and answer.
// parseRequest must classify every datagram as docs/metrics-protocol.md §5
// says, never panic, and accept only what re-encodes to itself; answer must
// send nothing or one response no larger than the datagram.
func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	key := exampleKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRequest(data, key)
		sigOK := len(data) >= 3 && data[0] == 0x53 && data[1] == 0x4d
		switch {
		case err == nil:
			if len(data) != requestSize || !sigOK || data[2] != protoVersion {
				t.Fatalf("parseRequest accepted %x", data)
			}
			again := appendRequest(nil, r, key)
			if data[6] == 0 && data[7] == 0 && !bytes.Equal(again, data) {
				t.Fatalf("parseRequest(%x) = %+v, which encodes to %x", data, r, again)
			}
		case errors.Is(err, errDrop):
			if sigOK && (len(data) == requestSize || data[2] == protoVersion && len(data) >= responseSize) {
				t.Fatalf("parseRequest dropped %x", data)
			}
		case errors.Is(err, errBadLength):
			if !sigOK || data[2] != protoVersion || len(data) == requestSize || len(data) < responseSize {
				t.Fatalf("parseRequest(%x): %v", data, err)
			}
		case errors.Is(err, errBadVersion):
			if !sigOK || len(data) != requestSize || data[2] == protoVersion {
				t.Fatalf("parseRequest(%x): %v", data, err)
			}
		case errors.Is(err, errBadMAC):
			if !sigOK || len(data) != requestSize || data[2] != protoVersion || bytes.Equal(mac(key, data[:24]), data[24:]) {
				t.Fatalf("parseRequest(%x): %v", data, err)
			}
		default:
			t.Fatalf("parseRequest(%x): unexpected error %v", data, err)
		}
		checkAnswer(t, bareServer(), data, exampleNow)
	})
}

// FuzzAnswer reaches past the MAC: it signs the fuzzed datagram (when it is
// 40 octets) and sets the server's clock near its timestamp, so that the
// window, the replay cache, the commands and their arguments are explored.
// A second copy of an accepted datagram must be refused as a replay, and a
// refused request must change nothing.
func FuzzAnswer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, true, int64(0))
	}
	f.Add(signed(CmdSetMaxSize, 1, 0, exampleTime), true, int64(30000))
	f.Add(signed(CmdVerboseOn, 1, 0, exampleTime), true, int64(-30001))
	f.Add(signed(CmdFilterOn, 1, 0, exampleTime), false, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, sign bool, skewMillis int64) {
		if sign && len(data) == requestSize {
			data = resign(bytes.Clone(data))
		}
		now := exampleNow
		if len(data) >= 24 {
			if ts := binary.BigEndian.Uint64(data[16:]); ts <= math.MaxInt64/2 {
				now = time.UnixMilli(int64(ts)).Add(time.Duration(skewMillis%100000) * time.Millisecond)
			}
		}
		srv := bareServer()
		before := srv.RuntimeSettings()
		first := checkAnswer(t, srv, data, now)
		after := srv.RuntimeSettings()
		if first != StatusOK && after != before {
			t.Fatalf("request %x refused with %v changed the server: %+v -> %+v", data, first, before, after)
		}
		second := checkAnswer(t, srv, data, now)
		if _, perr := parseRequest(data, exampleKey()); perr == nil && second != StatusAuthFailed {
			t.Fatalf("second copy of %x got %v, want AUTH_FAILED", data, second)
		}
	})
}

// bareServer is a server with just what answer needs, and no files: the
// fuzz targets make one per input.
func bareServer() *Server {
	srv := &Server{
		set:     settings{metricsKey: exampleKey()},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		started: time.Now(),
	}
	srv.maxSize.Store(DefaultMaxMessageBytes)
	return srv
}

// TestRefusedRequestsLogRateLimited: refused requests (AUTH_FAILED) are
// logged at most once every 10 seconds, with their count, as
// docs/metrics-protocol.md §5 and §11.2 say: a flood of forged datagrams
// cannot flood the log.
func TestRefusedRequestsLogRateLimited(t *testing.T) {
	var log bytes.Buffer
	srv := bareServer()
	srv.log = slog.New(slog.NewTextHandler(&log, nil))
	otherKey := bytes.Repeat([]byte{0xee}, 32)
	refuse := func(n int, now time.Time) {
		for i := range n {
			req := appendRequest(nil, request{command: CmdMessages, id: uint16(i), timestamp: uint64(now.UnixMilli())}, otherKey)
			if got := checkAnswer(t, srv, req, now); got != StatusAuthFailed {
				t.Fatalf("request with another key: %v, want AUTH_FAILED", got)
			}
		}
	}
	refuse(1000, exampleNow)                    // logged: the first, count=1
	refuse(1000, exampleNow.Add(9*time.Second)) // within 10 s of it: counted only
	refuse(1, exampleNow.Add(10*time.Second+1)) // logged: the 2000 since the first line
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " count=1") || !strings.HasSuffix(lines[1], " count=2000") {
		t.Errorf("3001 refusals in 10 s logged as:\n%s\nwant two lines, count=1 then count=2000", log.String())
	}
}
