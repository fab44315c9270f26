package smtpd_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// lineRecorder records each Write it gets, to check that every one is a
// whole trace line.
type lineRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

var traceLine = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} \[(\d+)\] (C: |S: |\* |   ↳ )[^\n]*\n$`)

// TestTraceConcurrentSessions runs many sessions at once with the trace on
// (explain mode, whole bodies) and checks that every write to the trace is
// one whole line, and that each session's lines are complete and in order.
func TestTraceConcurrentSessions(t *testing.T) {
	rec := &lineRecorder{}
	srv := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{Trace: rec, Verbose: true, Explain: true, TraceBody: true}))
	const sessions, lines = 40, 20
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			c, err := client.Dial(srv.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			var body strings.Builder
			fmt.Fprintf(&body, "Subject: session %d\r\n\r\n", i)
			for l := range lines {
				fmt.Fprintf(&body, "line %d of session %d %s\r\n", l, i, strings.Repeat("x", 60))
			}
			if _, err := c.Greeting(); err != nil {
				t.Error(err)
				return
			}
			steps := []func() error{
				func() error { _, err := c.Hello("client.test"); return err },
				func() error { _, err := c.Mail("bob@example.net"); return err },
				func() error { _, err := c.Rcpt(fmt.Sprintf("user%d@example.org", i)); return err },
				func() error { _, err := c.Data([]byte(body.String())); return err },
				c.Quit,
			}
			for _, step := range steps {
				if err := step(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if _, err := srv.WaitMessages(t.Context(), sessions); err != nil {
		t.Fatal(err)
	}
	srv.Close()

	perSession := map[string][]string{}
	for _, w := range rec.writes {
		m := traceLine.FindStringSubmatch(w)
		if m == nil {
			t.Fatalf("trace write %q is not one whole trace line", w)
		}
		perSession[m[1]] = append(perSession[m[1]], w)
	}
	if len(perSession) != sessions {
		t.Fatalf("trace shows %d sessions, want %d", len(perSession), sessions)
	}
	for id, ws := range perSession {
		all := strings.Join(ws, "")
		// Each body line arrives whole and in order, within its session.
		var session string
		if m := regexp.MustCompile(`C: Subject: session (\d+)`).FindStringSubmatch(all); m != nil {
			session = m[1]
		} else {
			t.Fatalf("session [%s]: no Subject line in its trace", id)
		}
		last := -1
		for _, w := range ws {
			var l int
			var s string
			if n, _ := fmt.Sscanf(w[strings.Index(w, "C: ")+3:], "line %d of session %s", &l, &s); n == 2 {
				if s != session || l != last+1 {
					t.Errorf("session [%s]: line %q out of place", id, w)
				}
				last = l
			}
		}
		if last != lines-1 {
			t.Errorf("session [%s]: traced %d body lines, want %d", id, last+1, lines)
		}
		if !strings.Contains(all, "S: 221 2.0.0 Bye") || bytes.Count([]byte(all), []byte("   ↳ ")) < 6 {
			t.Errorf("session [%s]: trace incomplete:\n%s", id, all)
		}
	}
}

// TestBareLFCounted checks that command lines ending in a bare LF are
// counted, and CRLF lines are not.
func TestBareLFCounted(t *testing.T) {
	srv := smtpdtest.NewServer(t)
	c, err := client.Dial(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Greeting(); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{"EHLO nc.class\n", "NOOP\r\n", "NOOP\n"} {
		if err := c.SendRaw([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		if r, err := c.ReadReply(); err != nil || r.Code != 250 {
			t.Fatalf("%q: %v %v", raw, r, err)
		}
	}
	if got := srv.SMTP.Stats().BareLF; got != 2 {
		t.Errorf("Stats().BareLF = %d, want 2", got)
	}
}
