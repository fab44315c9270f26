package smtpd_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// The abuse limits, each hit by a client, and one test with many
// misbehaving clients at once while a good one is served as usual. The
// limits that existed before (MaxConns, MaxErrors, CommandTimeout, the
// 512-octet line) have their scripts: conns_max, errors_too_many,
// timeout_idle, line_too_long.

// dialFrom connects to addr from the local address ip (any address of
// 127.0.0.0/8 works on Linux), so that a test can play several clients.
func dialFrom(t *testing.T, ip, addr string) *client.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: secWait}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s (needs the whole 127.0.0.0/8 on loopback): %v", ip, err)
	}
	c := client.NewClient(conn)
	c.Timeout = secWait
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMaxConnsPerIP(t *testing.T) {
	ts := startSec(t, smtpd.Config{MaxConnsPerIP: 2})
	a := dialFrom(t, "127.0.0.1", ts.Addr)
	secExpect(t, a, "220")
	b := dialFrom(t, "127.0.0.1", ts.Addr)
	secExpect(t, b, "220")
	over := dialFrom(t, "127.0.0.1", ts.Addr)
	secExpect(t, over, "421 4.7.0")
	secExpectEOF(t, over)
	if trace := string(ts.trace.bytes()); !strings.Contains(trace, "refused: over 2 sessions from 127.0.0.1") {
		t.Errorf("trace lacks the refusal:\n%s", trace)
	}

	// Another address is not affected.
	other := dialFrom(t, "127.0.0.2", ts.Addr)
	secExpect(t, other, "220")
	secCmd(t, other, "EHLO other.test", "250")
	secSend(t, other, "bob@example.net", "alice@example.org")

	// A slot freed is a slot again.
	secCmd(t, a, "QUIT", "221")
	deadline := time.Now().Add(secWait)
	for {
		c := dialFrom(t, "127.0.0.1", ts.Addr)
		r, err := c.ReadReply()
		if err == nil && r.Code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a client quit: %v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionTimeout: a busy session still ends at SessionTimeout.
func TestSessionTimeout(t *testing.T) {
	ts := startSec(t, smtpd.Config{SessionTimeout: 500 * time.Millisecond})
	start := time.Now()
	c := secDial(t, ts.Addr, nil)
	for {
		r, err := c.Cmd("NOOP")
		if err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		if r.Code == 421 {
			if !strings.HasPrefix(r.String(), "421 4.4.2") || !strings.Contains(r.String(), "session time limit") {
				t.Fatalf("got %q, want 421 4.4.2 session time limit", r.String())
			}
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("session still going after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := time.Since(start); d < 450*time.Millisecond || d > 3*time.Second {
		t.Errorf("session ended after %v, want about 500ms", d)
	}
	secExpectEOF(t, c)
}

// trickle writes b to c one byte every gap, until it has all been sent or
// the connection fails; it returns when done.
func trickle(c *client.Client, b []byte, gap time.Duration) {
	for i := range b {
		if c.SendRaw(b[i:i+1]) != nil {
			return
		}
		time.Sleep(gap)
	}
}

// TestSlowlorisCommand: a command trickled a byte at a time must arrive
// whole within CommandTimeout; the trickle does not extend it.
func TestSlowlorisCommand(t *testing.T) {
	ts := startSec(t, smtpd.Config{CommandTimeout: 400 * time.Millisecond})
	c := secDial(t, ts.Addr, nil)
	start := time.Now()
	go trickle(c, []byte(strings.Repeat("NOOP ", 100)), 50*time.Millisecond)
	secExpect(t, c, "421 4.4.2")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("trickling client dropped after %v, want about 400ms", d)
	}
	secExpectEOF(t, c)
}

// TestSlowlorisData: message data trickled just fast enough to beat
// DataTimeout is stopped by SessionTimeout.
func TestSlowlorisData(t *testing.T) {
	ts := startSec(t, smtpd.Config{DataTimeout: 300 * time.Millisecond, SessionTimeout: time.Second})
	start := time.Now()
	c := secDial(t, ts.Addr, nil)
	secCmd(t, c, "EHLO c", "250")
	secCmd(t, c, "MAIL FROM:<a@example.net>", "250")
	secCmd(t, c, "RCPT TO:<b@example.org>", "250")
	secCmd(t, c, "DATA", "354")
	go trickle(c, []byte(strings.Repeat("x", 200)), 100*time.Millisecond)
	secExpect(t, c, "421 4.4.2 smtpd.test Error: session time limit exceeded")
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("session ended after %v, want about 1s", d)
	}
	secExpectEOF(t, c)
	if n := len(ts.Messages()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestEarlyTalker: with GreetDelay, a client that speaks before the
// greeting gets 554 5.5.0 and is closed; one that waits is greeted after
// the delay.
func TestEarlyTalker(t *testing.T) {
	const delay = 300 * time.Millisecond
	ts := startSec(t, smtpd.Config{GreetDelay: delay})

	early, err := client.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	early.Send("EHLO early.test", "MAIL FROM:<spam@example.net>")
	secExpect(t, early, "554 5.5.0")
	secExpectEOF(t, early)

	start := time.Now()
	polite := secDial(t, ts.Addr, nil)
	if d := time.Since(start); d < delay {
		t.Errorf("greeted after %v, want at least %v", d, delay)
	}
	secCmd(t, polite, "EHLO polite.test", "250")
	if !strings.Contains(string(ts.trace.bytes()), "refused: the client spoke before the greeting") {
		t.Errorf("trace lacks the early talker:\n%s", ts.trace.bytes())
	}
}

// TestShutdownDuringGreetDelay: a client waiting out GreetDelay when the
// server shuts down gets 421 at once, and Shutdown does not wait for the
// delay to end.
func TestShutdownDuringGreetDelay(t *testing.T) {
	ts := startSec(t, smtpd.Config{GreetDelay: time.Hour})
	c, err := client.Dial(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !ts.trace.WaitMatch(regexp.MustCompile(`connected from`), 10*time.Second) {
		t.Fatal("the session did not start")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := ts.SMTP.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	secExpect(t, c, "421 4.3.2")
}

// TestMisbehavingClients: while clients flood one address, trickle
// commands, pile up errors, talk early and fail AUTH, a good client from
// another address is served as fast as ever.
func TestMisbehavingClients(t *testing.T) {
	ts := startSec(t, smtpd.Config{
		MaxConnsPerIP:     4,
		CommandTimeout:    2 * time.Second,
		GreetDelay:        50 * time.Millisecond,
		Authenticate:      testUsers(t).Authenticate,
		AllowInsecureAuth: true,
		AuthFailureDelay:  time.Second,
	})
	var wg sync.WaitGroup
	bad := func(f func(c *client.Client)) {
		c := dialFrom(t, "127.0.0.1", ts.Addr)
		wg.Go(func() { f(c) })
	}
	// Two slowloris clients, holding two of the four slots of 127.0.0.1.
	for range 2 {
		bad(func(c *client.Client) {
			if _, err := c.ReadReply(); err == nil {
				trickle(c, []byte(strings.Repeat("X", 60)), 50*time.Millisecond)
			}
		})
	}
	// An error spewer and an AUTH guesser.
	bad(func(c *client.Client) {
		c.ReadReply()
		for i := 0; i < 20; i++ {
			if r, err := c.Cmd("BOGUS"); err != nil || r.Code == 421 {
				return
			}
		}
	})
	bad(func(c *client.Client) {
		c.ReadReply()
		c.Cmd("EHLO guesser.test")
		for i := 0; i < 5; i++ {
			if r, err := c.Cmd("AUTH PLAIN " + plainResponse(testUser, "guess")); err != nil || r.Code == 421 {
				return
			}
		}
	})
	// Early talkers and a flood beyond the per-address limit.
	for range 10 {
		bad(func(c *client.Client) {
			c.Send("EHLO flood.test")
			c.ReadReply()
		})
	}

	// The good client, from 127.0.0.2.
	start := time.Now()
	good := dialFrom(t, "127.0.0.2", ts.Addr)
	secExpect(t, good, "220")
	secCmd(t, good, "EHLO good.test", "250")
	secSend(t, good, "bob@example.net", "alice@example.org")
	secCmd(t, good, "QUIT", "221")
	if d := time.Since(start); d > time.Second {
		t.Errorf("the good client took %v", d)
	}
	if m := secOnlyMessage(t, ts.Server); m.Helo != "good.test" {
		t.Errorf("stored message from %q", m.Helo)
	}
	wg.Wait()
}

// TestMaxConnsPerIPLoopbackExempt: with MaxConnsPerIP left at its default,
// loopback clients (the machine's own tests and tools) are not limited; a
// value set applies to them too (TestMaxConnsPerIP).
func TestMaxConnsPerIPLoopbackExempt(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range smtpd.DefaultMaxConnsPerIP + 20 {
		c, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		greeting, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("connection %d from 127.0.0.1: %q, %v", i+1, greeting, err)
		}
	}
}

// TestMaxConnsPerIPNoLimit: by default a remote address (here a lab
// machine's, 192.0.2.1, given by a PROXY header from a trusted local proxy)
// gets 421 4.7.0 at its 101st session; with MaxConnsPerIP -1 (smtpd
// -max-conns-per-ip -1) it is not limited at all.
func TestMaxConnsPerIPNoLimit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		maxConnsPerIP int
		refusedAt     int // the first session refused; 0: none
	}{
		{"default", 0, smtpd.DefaultMaxConnsPerIP + 1},
		{"no limit", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{
				MaxConnsPerIP: tc.maxConnsPerIP,
				ProxyFrom:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			}))
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for i := 1; i <= smtpd.DefaultMaxConnsPerIP+20; i++ {
				c, err := net.Dial("tcp", srv.Addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "PROXY TCP4 192.0.2.1 192.0.2.25 %d 25\r\n", 40000+i)
				reply, err := bufio.NewReader(c).ReadString('\n')
				want := "220 "
				if i == tc.refusedAt {
					want = "421 4.7.0 "
				}
				if err != nil || !strings.HasPrefix(reply, want) {
					t.Fatalf("session %d from 192.0.2.1: %q, %v; want %q", i, reply, err, want)
				}
				if i == tc.refusedAt {
					return
				}
			}
			if tc.refusedAt != 0 {
				t.Fatalf("no session refused; want the %dth", tc.refusedAt)
			}
		})
	}
}
