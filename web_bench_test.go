package smtpd_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// The HTTP view's figures (docs/performance.md): indexing a Maildir of
// 10,000 messages at start, listing the first page of them, and how soon a
// new message shows in the list and the event stream after its 250.

const benchMaildirSize = 10000

// benchMaildir writes n messages into dir/Maildir, spread over 10
// mailboxes and named as the server names them: two plain messages of
// about 2 KiB for each multipart one with an HTML part and an attachment.
func benchMaildir(tb testing.TB, dir string, n int) {
	tb.Helper()
	start := time.Now().Add(-time.Duration(n) * time.Second)
	for i := range n {
		box := filepath.Join(dir, "Maildir", fmt.Sprintf("user%d", i%10))
		if i < 10 {
			for _, sub := range []string{"tmp", "new", "cur"} {
				if err := os.MkdirAll(filepath.Join(box, sub), 0o700); err != nil {
					tb.Fatal(err)
				}
			}
		}
		when := start.Add(time.Duration(i) * time.Second)
		name := fmt.Sprintf("%d.M%dP1Q%dR0.bench", when.Unix(), when.Nanosecond()/1000, i)
		msg := "Return-Path: <bench@example.net>\nReceived: from bench (localhost [127.0.0.1])\n\tby bench.test (smtpd) with ESMTP id X\n\tfor <user@example.org>;\n\tFri, 27 Nov 2026 14:25:11 +0000\n"
		if i%3 == 2 {
			msg += string(storedMultipart(i))
		} else {
			msg += strings.ReplaceAll(string(benchMessage), "\r\n", "\n")
		}
		if err := os.WriteFile(filepath.Join(box, "new", name), []byte(msg), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// storedMultipart is webMessage as stored (LF line endings), numbered.
func storedMultipart(i int) []byte {
	return []byte(strings.ReplaceAll(string(webMessage(fmt.Sprintf("=?UTF-8?Q?n=C2=BA_%d?=", i), "http://192.0.2.1/p.gif")), "\r\n", "\n"))
}

// benchView starts a server on dir with its HTTP view on a loopback port
// and returns the view's URL once the Maildir is indexed.
func benchView(tb testing.TB, dir string) (*smtpd.Server, string) {
	tb.Helper()
	srv, err := smtpd.NewServer(smtpd.Config{Hostname: "bench.test", DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.ServeWeb(l)
	url := "http://" + l.Addr().String()
	// The list answers once the first scan is done.
	if err := getOK(url + "/api/v1/messages?limit=1"); err != nil {
		tb.Fatal(err)
	}
	return srv, url
}

// getOK fetches url and drains its body.
func getOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// BenchmarkWebIndex measures a start on a Maildir of 10,000 messages, from
// NewServer until the list answers: every file read and its header fields
// and MIME structure indexed. "read-files" is the floor: the same files
// only read, through the same os.Root.
func BenchmarkWebIndex(b *testing.B) {
	dir := b.TempDir()
	benchMaildir(b, dir, benchMaildirSize)
	b.Run("start", func(b *testing.B) {
		for b.Loop() {
			srv, _ := benchView(b, dir)
			srv.Close()
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/start")
	})
	b.Run("read-files", func(b *testing.B) {
		for b.Loop() {
			readAll(b, filepath.Join(dir, "Maildir"))
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/start")
	})
}

// readAll reads every file of the mailboxes' new/ directories.
func readAll(tb testing.TB, root string) {
	r, err := os.OpenRoot(root)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	boxes, _ := filepath.Glob(filepath.Join(root, "*", "new"))
	for _, box := range boxes {
		rel, _ := filepath.Rel(root, box)
		entries, err := os.ReadDir(box)
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			if _, err := r.ReadFile(rel + "/" + e.Name()); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkWebList measures GET requests for the first page (50 messages)
// of a Maildir of 10,000, over HTTP on loopback: the JSON API, the same
// with searches that match a third of them (ASCII, and not), and the web
// page.
func BenchmarkWebList(b *testing.B) {
	dir := b.TempDir()
	benchMaildir(b, dir, benchMaildirSize)
	srv, url := benchView(b, dir)
	defer srv.Close()
	for _, bc := range []struct{ name, path string }{
		{"api", "/api/v1/messages"},
		{"api-search", "/api/v1/messages?query=sender"},
		{"api-search-utf8", "/api/v1/messages?query=n%C2%BA"},
		{"page", "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := getOK(url + bc.path); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/list")
		})
	}
}

// BenchmarkWebArrival sends messages one at a time to a server whose HTTP
// view is on and has a subscriber on its event stream, and measures, from
// the moment the client reads its 250, how long until the subscriber has
// read the "message" event, and until a GET of the list shows the message
// on top. The server announces a message before it sends the 250, so the
// first figure is at most the time the event takes to cross loopback.
// "no-view" is the peer: the same transactions with no HTTP view;
// ms-send-p50, from MAIL to the 250 after the data, compares the two.
func BenchmarkWebArrival(b *testing.B) {
	b.Run("view", func(b *testing.B) {
		dir := b.TempDir()
		srv, url := benchView(b, dir)
		defer srv.Close()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(l)
		events, stop := benchEvents(b, url)
		defer stop()
		c, err := dialBench(l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.quit()
		var toEvent, toList, to250 []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := c.send("alice@example.org"); err != nil {
				b.Fatal(err)
			}
			got250 := time.Now()
			to250 = append(to250, got250.Sub(start))
			id := <-events
			toEvent = append(toEvent, max(0, id.at.Sub(got250)))
			if err := firstListed(url, id.id); err != nil {
				b.Fatal(err)
			}
			toList = append(toList, time.Since(got250))
		}
		b.ReportMetric(msPercentile(to250, 50), "ms-send-p50")
		b.ReportMetric(msPercentile(toEvent, 50), "ms-event-p50")
		b.ReportMetric(msPercentile(toEvent, 100), "ms-event-max")
		b.ReportMetric(msPercentile(toList, 50), "ms-list-p50")
		b.ReportMetric(msPercentile(toList, 100), "ms-list-max")
	})
	b.Run("no-view", func(b *testing.B) {
		c, err := dialBench(startBenchServer(b))
		if err != nil {
			b.Fatal(err)
		}
		defer c.quit()
		var to250 []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := c.send("alice@example.org"); err != nil {
				b.Fatal(err)
			}
			to250 = append(to250, time.Since(start))
		}
		b.ReportMetric(msPercentile(to250, 50), "ms-send-p50")
	})
}

// arrival is a "message" event and when the subscriber read it.
type arrival struct {
	id string
	at time.Time
}

// benchEvents subscribes to the event stream and sends the id of each
// stored message, with the time it was read.
func benchEvents(b *testing.B, url string) (<-chan arrival, func()) {
	resp, err := http.Get(url + "/api/v1/events")
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan arrival, 1024)
	ready := make(chan struct{})
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		name := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = line[len("event: "):]
				if name == "ready" {
					close(ready)
				}
			case name == "message" && strings.HasPrefix(line, `data: {"id":"`):
				id, _, _ := strings.Cut(line[len(`data: {"id":"`):], `"`)
				out <- arrival{id, time.Now()}
			}
		}
	}()
	<-ready
	return out, func() {
		resp.Body.Close()
		for range out {
		}
	}
}

// firstListed reports an error unless the list's first message is id.
func firstListed(url, id string) error {
	resp, err := http.Get(url + "/api/v1/messages?limit=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if !strings.Contains(string(body), `"id":"`+id+`"`) {
		return fmt.Errorf("the list does not start with %s: %s", id, body)
	}
	return nil
}

// msPercentile returns the p-th percentile of ds in milliseconds.
func msPercentile(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, len(s)*p/100)
	return float64(s[i].Microseconds()) / 1000
}
