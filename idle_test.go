//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package smtpd_test

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/internal/holdprobe"
)

// TestIdleSessionStack checks that a session idle after EHLO waits near the
// base of a goroutine's stack. The runtime starts goroutines with a stack
// as large as the average in use at the last GC plus a guard of about
// 1 KiB, rounded up to a power of two: a server whose sessions wait using
// less than 1 KiB gives them the smallest stack, 2 KiB. At 10,000 idle
// sessions their stacks are most of the server's memory.
func TestIdleSessionStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes stacks larger")
	}
	addr := startBenchServer(t)

	const n = 200
	before := stackScanned()
	h := holdprobe.Hold(addr, n, 8, 10*time.Second, time.Now().Add(30*time.Second))
	defer h.Close()
	if len(h.Conns) != n {
		t.Fatalf("held %d of %d sessions: %v", len(h.Conns), n, h.FirstErr)
	}
	// Let the last sessions park: they wait 20 ms on their own
	// goroutine first (parkAfter).
	time.Sleep(500 * time.Millisecond)
	perSession := (stackScanned() - before) / n
	t.Logf("stack in use per idle session: %d bytes", perSession)
	if perSession > 1<<10 {
		t.Errorf("an idle session uses %d bytes of its stack; want under 1 KiB", perSession)
	}
	if alive := h.Check(8, 10*time.Second); alive != n {
		t.Errorf("%d of %d idle sessions answered NOOP", alive, n)
	}
}

// stackScanned returns the bytes of goroutine stack in use, as a GC it
// runs first finds them.
func stackScanned() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// BenchmarkIdleRoundTrip times a HELO and its reply on an idle session:
// each one wakes the session from its wait and parks it again, the path an
// idle session takes for every command between transactions. (Not NOOP:
// past 100 of them without a message, the server counts each as an error.)
func BenchmarkIdleRoundTrip(b *testing.B) {
	addr := startBenchServer(b)
	h := holdprobe.Hold(addr, 1, 1, 10*time.Second, time.Now().Add(10*time.Second))
	if len(h.Conns) != 1 {
		b.Fatal(h.FirstErr)
	}
	defer h.Close()
	c := h.Conns[0]
	for b.Loop() {
		if err := c.Helo(); err != nil {
			b.Fatal(err)
		}
	}
}
