package smtpd

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestEventQueueBound: a subscriber that does not read keeps at most
// maxQueuedEvents events; the rest are counted, and the next batch it
// takes starts with a "dropped" event saying how many.
func TestEventQueueBound(t *testing.T) {
	var h eventHub
	slow := h.subscribe(false)
	tracer := h.subscribe(true)
	if !h.tracing() {
		t.Fatal("a trace subscriber, but tracing() is false")
	}
	const sent = maxQueuedEvents + 100
	for i := range sent {
		h.publish("message", map[string]int{"n": i}, false)
	}

	events, closed := slow.take()
	if closed || len(events) != maxQueuedEvents+1 {
		t.Fatalf("took %d events (closed %v), want %d and a marker", len(events), closed, maxQueuedEvents)
	}
	if got, want := string(events[0]), "event: dropped\ndata: {\"events\":100}\n\n"; got != want {
		t.Errorf("first event %q, want %q", got, want)
	}
	if got, want := string(events[1]), "event: message\ndata: {\"n\":0}\n\n"; got != want {
		t.Errorf("oldest kept event %q, want %q", got, want)
	}
	// Once taken, the queue has room again, and no marker is repeated.
	h.publish("message", map[string]int{"n": sent}, false)
	if events, _ := slow.take(); len(events) != 1 || !strings.Contains(string(events[0]), fmt.Sprint(sent)) {
		t.Errorf("after the drop: %q", events)
	}
	// Trace events go to the trace subscriber only.
	tracer.take()
	h.publish("trace", traceEvent{Text: "C: only for the trace"}, true)
	if events, _ := tracer.take(); len(events) != 1 || !strings.Contains(string(events[0]), "only for the trace") {
		t.Errorf("trace subscriber got %q", events)
	}
	if events, _ := slow.take(); len(events) != 0 {
		t.Errorf("a subscriber without ?trace=1 got %q", events)
	}

	// Subscribers are bounded too, and none is added after close.
	subs := []*subscriber{slow, tracer}
	for len(subs) < maxSubscribers {
		subs = append(subs, h.subscribe(false))
	}
	if h.subscribe(false) != nil {
		t.Errorf("subscriber %d accepted, over maxSubscribers", maxSubscribers+1)
	}
	h.unsubscribe(tracer)
	if h.tracing() {
		t.Errorf("tracing() after the trace subscriber left")
	}
	h.close()
	if _, closed := slow.take(); !closed {
		t.Errorf("a subscriber is not told that the hub closed")
	}
	h.unsubscribe(slow)
	if h.subscribe(false) != nil {
		t.Errorf("subscribe after close")
	}
}

// TestStripANSI: the palette's colors are taken out of trace lines.
func TestStripANSI(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                         "plain",
		"\x1b[36mC: EHLO x\x1b[0m":      "C: EHLO x",
		"\x1b[31;1mS: 500 x\x1b[0m end": "S: 500 x end",
		"cut \x1b[3":                    "cut ",
	} {
		if got := stripANSI(in); got != want {
			t.Errorf("stripANSI(%q) = %q, want %q", in, got, want)
		}
	}
}

// testIndex returns an index of a Maildir root in a temporary directory.
func testIndex(t testing.TB) (*mailIndex, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return newMailIndex(func() (*os.Root, error) { return root, nil }), dir
}

// storeFile writes a message file into dir/box/new, named as the server
// names them, stored at the given time.
func storeFile(t *testing.T, dir, box string, when time.Time, subject string) string {
	t.Helper()
	name := fmt.Sprintf("%d.M%dP1Q1R0.test", when.Unix(), when.Nanosecond()/1000)
	path := filepath.Join(dir, box, "new", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("Subject: "+subject+"\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIndexBounds: the index holds the newest maxEntries messages, at start
// and as messages arrive, and the newest maxReceipts keep their transcript.
func TestIndexBounds(t *testing.T) {
	ix, dir := testIndex(t)
	ix.maxEntries, ix.maxReceipts = 5, 2
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 8 {
		storeFile(t, dir, "alice", start.Add(time.Duration(i)*time.Second), fmt.Sprint("old ", i))
	}
	if err := ix.scan(); err != nil {
		t.Fatal(err)
	}
	subjects := func() string {
		entries, _, total := ix.page("", 0, 100)
		var s []string
		for _, e := range entries {
			s = append(s, e.Subject)
		}
		return fmt.Sprint(total, s)
	}
	if got, want := subjects(), "5 [old 7 old 6 old 5 old 4 old 3]"; got != want {
		t.Errorf("after the scan: %s, want %s", got, want)
	}
	for i := range 3 {
		path := storeFile(t, dir, "bob", start.Add(time.Hour+time.Duration(i)*time.Second), fmt.Sprint("new ", i))
		ix.add(&Message{ID: fmt.Sprint("Q", i), Paths: []string{path}})
	}
	if got, want := subjects(), "5 [new 2 new 1 new 0 old 7 old 6]"; got != want {
		t.Errorf("after 3 more: %s, want %s", got, want)
	}
	var kept []string
	for _, e := range ix.all() {
		if rc := ix.receivedOf(e); rc != nil {
			kept = append(kept, rc.QueueID)
		}
	}
	if got := fmt.Sprint(kept); got != "[Q1 Q2]" {
		t.Errorf("receipts kept for %s, want the newest 2", got)
	}
}

// TestIndexPaths: only message files below the root are indexed; ids are
// the same for a file in new/ and, moved, in cur/; storedTime reads the
// server's file names.
func TestIndexPaths(t *testing.T) {
	ix, dir := testIndex(t)
	close(ix.ready)
	for _, p := range []string{
		"/etc/passwd",
		filepath.Join(dir, "..", "outside", "new", "x"),
		filepath.Join(dir, "alice", "tmp", "x"),
		filepath.Join(dir, "alice", "x"),
	} {
		if added := ix.add(&Message{Paths: []string{p}}); len(added) != 0 {
			t.Errorf("%s indexed", p)
		}
	}
	if messageID("alice", "1.M2P3.host") != messageID("alice", uniqueBase("1.M2P3.host:2,S")) {
		t.Errorf("a message moved to cur/ changes its id")
	}
	if messageID("alice", "x") == messageID("bob", "x") {
		t.Errorf("two mailboxes' copies share an id")
	}
	mod := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, want := range map[string]time.Time{
		"1764000000.M123456P42Q7R1f.host": time.Unix(1764000000, 123456000),
		"1764000000.42_7.host":            mod,
		"1764000000.Mxyz.host":            mod,
		"junk":                            mod,
	} {
		if got := storedTime(name, mod); !got.Equal(want) {
			t.Errorf("storedTime(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLoopbackHost lists the Host headers a loopback listener answers.
func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8025":       true,
		"localhost:8025":       true,
		"LOCALHOST.":           true,
		"app.localhost:1":      true,
		"[::1]:8025":           true,
		"127.0.0.2":            true,
		"evil.example:8025":    false,
		"127.0.0.1.nip.io":     false,
		"localhost.evil.com":   false,
		"192.168.1.1:8025":     false,
		"":                     false,
		"[::ffff:127.0.0.1]:1": true,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// BenchmarkIndexMemory reports what the index holds per listed message:
// for ordinary mail, and for messages whose every field is at its bound.
func BenchmarkIndexMemory(b *testing.B) {
	long := strings.Repeat("x", 300)
	var addrs []string
	for i := range 100 {
		addrs = append(addrs, fmt.Sprintf("%s%d@example.org", long, i))
	}
	for _, bc := range []struct{ name, msg string }{
		{"ordinary", "Return-Path: <bob@example.net>\nFrom: Bob <bob@example.net>\nTo: Alice <alice@example.org>\nSubject: Lunch on Friday?\nDate: Fri, 27 Nov 2026 14:25:11 +0000\n\nHello.\n"},
		{"bounds", "Return-Path: <" + long + "@example.net>\nFrom: " + long + " <x@example.net>\nTo: " + strings.Join(addrs, ", ") +
			"\nCc: " + strings.Join(addrs, ", ") + "\nSubject: " + long + "\n\nHello.\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ix, dir := testIndex(b)
			const n = 2000
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range n {
				when := start.Add(time.Duration(i) * time.Second)
				name := fmt.Sprintf("%d.M%dP1Q%dR0.test", when.Unix(), 0, i)
				path := filepath.Join(dir, "mailbox-with-a-name", "new", name)
				os.MkdirAll(filepath.Dir(path), 0o700)
				os.WriteFile(path, []byte(bc.msg), 0o600)
			}
			var before, after runtime.MemStats
			for b.Loop() {
				ix.list, ix.byID = nil, make(map[string]*indexEntry)
				ix.ready = make(chan struct{})
				runtime.GC()
				runtime.ReadMemStats(&before)
				if err := ix.scan(); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/message")
		})
	}
}

func TestContainsFold(t *testing.T) {
	for _, tc := range []struct {
		s, sub string
		want   bool
	}{
		{"Café at ten", "CAFÉ", true},
		{"Café at ten", "é a", true},
		{"RÉUNION", "réunion", true},
		{"Bob <bob@example.net>", "BOB@EXAMPLE", true},
		{"abc", "", true},
		{"", "a", false},
		{"abc", "abcd", false},
		{"abc", "bd", false},
		{"\xff\xfeab", "AB", true},
	} {
		if got := containsFold(tc.s, tc.sub); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v, want %v", tc.s, tc.sub, got, tc.want)
		}
	}
}
