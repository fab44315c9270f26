package holdprobe

import (
	"testing"
	"time"

	"github.com/tpe-protos/smtpd/smtpdtest"
)

// TestHoldAndProbe holds 200 idle sessions against a server, times new
// clients' greetings meanwhile and checks that every held session still
// answers: the path the 19,000-session measurement takes, made small.
func TestHoldAndProbe(t *testing.T) {
	addr := smtpdtest.NewServer(t).Addr

	const n = 200
	h := Hold(addr, n, 16, 10*time.Second, time.Now().Add(30*time.Second))
	defer h.Close()
	if len(h.Conns) != n {
		t.Fatalf("held %d of %d sessions; first error: %v", len(h.Conns), n, h.FirstErr)
	}
	var greets []time.Duration
	for range 5 {
		_, g, err := Greeting(addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		greets = append(greets, g)
	}
	if l := Summarize(greets, 0); l.N != 5 || l.MaxMs <= 0 {
		t.Errorf("Summarize = %+v", l)
	}
	if alive := h.Check(16, 10*time.Second); alive != n {
		t.Errorf("%d of %d sessions alive", alive, n)
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(ds, 2)
	want := Latencies{N: 10, P50Ms: 5, P90Ms: 9, MaxMs: 10, Errors: 2}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize(nil, 1); got != (Latencies{Errors: 1}) {
		t.Errorf("Summarize(nil) = %+v", got)
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:25": true, "[::1]:25": true, "localhost:25": true,
		"192.0.2.1:25": false, "example.org:25": false, "nonsense": false,
	} {
		if err := CheckLoopback(addr); (err == nil) != ok {
			t.Errorf("CheckLoopback(%q) = %v", addr, err)
		}
	}
}
