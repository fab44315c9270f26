// Package holdprobe holds many idle SMTP sessions open against a server and
// measures what they cost it: its resident memory per session, and how long
// a new client waits for the greeting meanwhile. internal/cmd/holdprobe
// drives it over several processes (one process has only so many file
// descriptors); see docs/performance.md.
//
// It speaks to loopback addresses only, and every wait is bounded.
package holdprobe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Conn is one client session, greeted and past EHLO.
type Conn struct {
	c  net.Conn
	br *bufio.Reader
}

// CheckLoopback refuses an address that is not on this machine: the tool
// opens thousands of connections and must not aim them elsewhere.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("holdprobe: %s is not a loopback address", addr)
	}
	return nil
}

// Dial opens a session: connect, 220 greeting, EHLO, 250; all within
// timeout. The session is then left without a deadline, idle.
func Dial(addr string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	// A small buffer: thousands of these live in one process.
	s := &Conn{c: c, br: bufio.NewReaderSize(c, 512)}
	c.SetDeadline(time.Now().Add(timeout))
	err = s.expect("220")
	if err == nil {
		err = s.cmd("EHLO holdprobe.test", "250")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

// expect reads a reply, all its lines, and checks its code.
func (s *Conn) expect(code string) error {
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("got %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// cmd sends a command line and checks the reply's code.
func (s *Conn) cmd(line, code string) error {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return err
	}
	return s.expect(code)
}

// Alive sends NOOP, expects 250, then QUIT, and closes the session. It
// reports whether the server still answered NOOP.
func (s *Conn) Alive(timeout time.Duration) bool {
	defer s.c.Close()
	s.c.SetDeadline(time.Now().Add(timeout))
	if s.cmd("NOOP", "250") != nil {
		return false
	}
	s.cmd("QUIT", "221")
	return true
}

// Helo sends HELO and waits for its 250: a round trip that changes
// nothing, and that the server does not count among the commands that make
// no progress, which it limits (NOOP is one of those).
func (s *Conn) Helo() error {
	return s.cmd("HELO holdprobe.test", "250")
}

// Close drops the session without a word.
func (s *Conn) Close() { s.c.Close() }

// Held is a set of idle sessions.
type Held struct {
	Conns    []*Conn
	Failed   int   // sessions that could not be set up
	FirstErr error // why the first of them failed
}

// Hold sets up n sessions, par at a time, each within timeout; it stops
// trying at deadline.
func Hold(addr string, n, par int, timeout time.Duration, deadline time.Time) *Held {
	h := &Held{}
	var mu sync.Mutex
	forEach(n, par, func(int) {
		var c *Conn
		err := errors.New("setup deadline reached")
		if time.Now().Before(deadline) {
			c, err = Dial(addr, min(timeout, time.Until(deadline)))
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			h.Failed++
			if h.FirstErr == nil {
				h.FirstErr = err
			}
			return
		}
		h.Conns = append(h.Conns, c)
	})
	return h
}

// Check asks every held session whether the server still serves it (see
// Conn.Alive), par at a time, and closes them all. It returns how many
// answered.
func (h *Held) Check(par int, timeout time.Duration) int {
	var mu sync.Mutex
	alive := 0
	forEach(len(h.Conns), par, func(i int) {
		if h.Conns[i].Alive(timeout) {
			mu.Lock()
			alive++
			mu.Unlock()
		}
	})
	h.Conns = nil
	return alive
}

// Close drops every held session.
func (h *Held) Close() {
	for _, c := range h.Conns {
		c.Close()
	}
	h.Conns = nil
}

// forEach calls fn(0) … fn(n-1) from par goroutines.
func forEach(n, par int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(par, n)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Greeting measures how long a new client waits for the 220 greeting: the
// connect (mostly the client's kernel: it finds a free local port), and
// from there to the end of the greeting's last line (the server's part). It
// then says QUIT.
func Greeting(addr string, timeout time.Duration) (connect, greet time.Duration, err error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	connected := time.Now()
	c.SetDeadline(start.Add(timeout))
	s := &Conn{c: c, br: bufio.NewReaderSize(c, 512)}
	if err := s.expect("220"); err != nil {
		return 0, 0, err
	}
	greeted := time.Now()
	s.cmd("QUIT", "221")
	return connected.Sub(start), greeted.Sub(connected), nil
}

// Latencies summarizes greeting waits.
type Latencies struct {
	N      int     `json:"n"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	MaxMs  float64 `json:"max_ms"`
	Errors int     `json:"errors"`
}

// Summarize returns the nearest-rank percentiles of ds.
func Summarize(ds []time.Duration, errors int) Latencies {
	l := Latencies{N: len(ds), Errors: errors}
	if len(ds) == 0 {
		return l
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return ms(s[max(0, i)])
	}
	l.P50Ms, l.P90Ms, l.MaxMs = rank(0.5), rank(0.9), ms(s[len(s)-1])
	return l
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// RSS returns the resident memory of process pid in KiB (Linux /proc).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("holdprobe: no VmRSS in /proc status")
}

// FDs returns how many files process pid has open (Linux /proc).
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents), err
}
