package smtpd_test

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// TestAuthChecksBounded: at most MaxAuthChecks password checks (by default
// GOMAXPROCS) run at once, however many sessions send AUTH; an AUTH that
// finds none free within the command timeout gets 454 4.7.0 and may try
// again. The checks here block until the test lets them go, ignoring their
// context as a stuck backend would, so that what the server allows is seen
// exactly.
func TestAuthChecksBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int // Config.MaxAuthChecks
		want  int // checks at once
	}{
		{"default", 0, runtime.GOMAXPROCS(0)},
		{"three", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var running, most atomic.Int32
			entered := make(chan struct{}, 100)
			release := make(chan struct{})
			authenticate := func(ctx context.Context, user, password string) error {
				n := running.Add(1)
				defer running.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				entered <- struct{}{}
				<-release
				return nil
			}
			ts := startSec(t, smtpd.Config{
				Authenticate:      authenticate,
				AllowInsecureAuth: true,
				MaxAuthChecks:     tc.limit,
				CommandTimeout:    time.Second, // the longest an AUTH waits for a check
			})
			letGo := sync.OnceFunc(func() { close(release) })
			t.Cleanup(letGo) // before the server's Close, which waits for the checks
			auth := "AUTH PLAIN " + plainResponse(testUser, testPassword)

			// tc.want sessions take every check.
			holders := make([]*client.Client, tc.want)
			for i := range holders {
				holders[i] = secDial(t, ts.Addr, nil)
				secCmd(t, holders[i], "EHLO client.test", "250")
				if err := holders[i].Send(auth); err != nil {
					t.Fatal(err)
				}
			}
			for range tc.want {
				select {
				case <-entered:
				case <-time.After(secWait):
					t.Fatalf("%d checks started, want %d", running.Load(), tc.want)
				}
			}

			// One more waits the command timeout for a check, in vain.
			late := secDial(t, ts.Addr, nil)
			secCmd(t, late, "EHLO client.test", "250")
			secCmd(t, late, auth, "454 4.7.0")
			if n := most.Load(); int(n) != tc.want {
				t.Errorf("%d checks ran at once, want %d", n, tc.want)
			}
			if !strings.Contains(string(ts.logs.bytes()), "too many password checks at once") {
				t.Errorf("the refusal is not logged:\n%s", string(ts.logs.bytes()))
			}

			// Once the checks are let go, every AUTH gets its answer.
			letGo()
			for _, c := range holders {
				secExpect(t, c, "235 2.7.0")
			}
			secCmd(t, late, auth, "235 2.7.0")
			if n := most.Load(); int(n) != tc.want {
				t.Errorf("%d checks ran at once, want %d", n, tc.want)
			}
		})
	}
}

// TestAuthChecksFree: a check that ends frees its slot, so sessions after
// it are not refused, however many came before.
func TestAuthChecksFree(t *testing.T) {
	ts := startSec(t, smtpd.Config{Authenticate: testUsers(t).Authenticate, AllowInsecureAuth: true, MaxAuthChecks: 1})
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := secDial(t, ts.Addr, nil)
			secCmd(t, c, "EHLO client.test", "250")
			secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, "wrong"), "535 5.7.8")
			secCmd(t, c, "AUTH PLAIN "+plainResponse(testUser, testPassword), "235 2.7.0")
		})
	}
}

// TestAuthChecksFairByAddress: while one client address keeps every check
// busy and more of its AUTH commands wait, an AUTH from another address
// gets the next free check: a real user is not queued behind an attacker's
// guesses.
func TestAuthChecksFairByAddress(t *testing.T) {
	entered := make(chan string, 10)
	releaseA1, releaseA2 := make(chan struct{}), make(chan struct{})
	letA1Go, letA2Go := sync.OnceFunc(func() { close(releaseA1) }), sync.OnceFunc(func() { close(releaseA2) })
	authenticate := func(ctx context.Context, user, password string) error {
		entered <- user
		switch user {
		case "a1":
			<-releaseA1
		case "a2":
			<-releaseA2
		}
		return nil
	}
	ts := startSec(t, smtpd.Config{Authenticate: authenticate, AllowInsecureAuth: true, MaxAuthChecks: 1})
	t.Cleanup(letA1Go) // before the server's Close, which waits for the checks
	t.Cleanup(letA2Go)
	start := func(ip, user string) *client.Client {
		c := dialFrom(t, ip, ts.Addr)
		secExpect(t, c, "220")
		secCmd(t, c, "EHLO client.test", "250")
		if err := c.Send("AUTH PLAIN " + plainResponse(user, testPassword)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	next := func() string {
		select {
		case user := <-entered:
			return user
		case <-time.After(secWait):
			t.Fatal("no check started")
			return ""
		}
	}

	a1 := start("127.0.0.1", "a1")
	if user := next(); user != "a1" {
		t.Fatalf("first check: %s", user)
	}
	a2 := start("127.0.0.1", "a2")
	b := start("127.0.0.2", "b")
	if !ts.trace.WaitMatch(regexp.MustCompile(`(?s)(waiting for a password check.*){2}`), secWait) {
		t.Fatalf("the AUTH commands of a2 and b do not wait:\n%s", ts.trace.bytes())
	}

	letA1Go()
	secExpect(t, a1, "235")
	if user := next(); user != "b" {
		t.Errorf("after a1's check, %s's started; want b's, from the other address", user)
	}
	secExpect(t, b, "235")
	if user := next(); user != "a2" {
		t.Errorf("then %s's check started, want a2's", user)
	}
	letA2Go()
	secExpect(t, a2, "235")
}
