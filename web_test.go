package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// webServer is a test SMTP server with its HTTP view (ServeWeb) on a free
// loopback port.
type webServer struct {
	*smtpdtest.Server
	URL string // http://127.0.0.1:port
}

// startWeb starts a server with cfg and serves its HTTP view; both stop
// with the test.
func startWeb(t *testing.T, cfg smtpd.Config) *webServer {
	t.Helper()
	ts := smtpdtest.NewServer(t, smtpdtest.Config(cfg))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The view first, so that the sessions of the test's first message
	// already keep their transcripts for it: ServeWeb, in its goroutine,
	// may make it only after that message is stored.
	ts.SMTP.Handler()
	served := make(chan error, 1)
	go func() { served <- ts.SMTP.ServeWeb(l) }()
	t.Cleanup(func() {
		ts.Close()
		if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
			t.Errorf("ServeWeb returned %v, want ErrServerClosed", err)
		}
	})
	return &webServer{Server: ts, URL: "http://" + l.Addr().String()}
}

// webMessage is a message as a mail program sends it: an RFC 2047 subject
// and display name, text and HTML alternatives (the HTML with a remote
// image, a tracking pixel), and an attachment with an RFC 2231 file name.
func webMessage(subject, pixelURL string) []byte {
	return []byte(strings.ReplaceAll(`From: =?UTF-8?Q?Jos=C3=A9_Sender?= <jose@example.net>
To: Alice <alice@example.org>
Cc: carol@example.org
Subject: `+subject+`
Date: Mon, 02 Jan 2006 15:04:05 -0700
Message-ID: <web.test@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 at ten.
--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p id=3D"greeting">Caf&eacute; at <b>ten</b>.</p><img id=3D"pixel" src=3D"`+pixelURL+`" alt=3D"pixel">
<script>document.getElementById("greeting").textContent =3D "a script ran"</script></body></html>
--alt--
--mixed
Content-Type: application/pdf
Content-Disposition: attachment; filename*=UTF-8''men%C3%BA.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--mixed--
`, "\n", "\r\n"))
}

// sendWebMail sends msg from jose to the recipients with net/smtp.
func sendWebMail(t *testing.T, addr string, msg []byte, to ...string) {
	t.Helper()
	if len(to) == 0 {
		to = []string{"alice@example.org"}
	}
	if err := smtp.SendMail(addr, nil, "jose@example.net", to, msg); err != nil {
		t.Fatal(err)
	}
}

// fetch makes a request with the header fields given as name, value pairs
// and returns the response's body and the response.
func fetch(t *testing.T, method, url string, header ...string) ([]byte, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, resp
}

// getJSON makes a request, checks that the answer is JSON and decodes it
// into v; it returns the status code.
func getJSON(t *testing.T, method, url string, v any, header ...string) int {
	t.Helper()
	body, resp := fetch(t, method, url, header...)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: Content-Type %q, body %q", method, url, ct, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, body)
		}
	}
	return resp.StatusCode
}

// getBytes fetches url and returns its body and response.
func getBytes(t *testing.T, url string) ([]byte, *http.Response) {
	t.Helper()
	return fetch(t, "GET", url)
}

// The JSON shapes of the API (docs/http-api.md), as a client reads them.
type (
	apiSummary struct {
		ID          string    `json:"id"`
		Mailbox     string    `json:"mailbox"`
		From        string    `json:"from"`
		ReturnPath  string    `json:"return_path"`
		To          []string  `json:"to"`
		Cc          []string  `json:"cc"`
		Subject     string    `json:"subject"`
		Date        time.Time `json:"date"`
		Stored      time.Time `json:"stored"`
		Size        int64     `json:"size"`
		Attachments int       `json:"attachments"`
	}
	apiList struct {
		Total    int          `json:"total"`
		Matched  int          `json:"matched"`
		Start    int          `json:"start"`
		Messages []apiSummary `json:"messages"`
	}
	apiMessage struct {
		ID          string   `json:"id"`
		Mailbox     string   `json:"mailbox"`
		From        string   `json:"from"`
		To          []string `json:"to"`
		Cc          []string `json:"cc"`
		Subject     string   `json:"subject"`
		Size        int64    `json:"size"`
		Text        string   `json:"text"`
		HTML        string   `json:"html"`
		Raw         string   `json:"raw"`
		Attachments []struct {
			Part        int    `json:"part"`
			Name        string `json:"name"`
			ContentType string `json:"content_type"`
			Size        int    `json:"size"`
			URL         string `json:"url"`
		} `json:"attachments"`
		Headers []struct{ Name, Value string } `json:"headers"`
		Parts   []struct {
			Index       int    `json:"index"`
			ContentType string `json:"content_type"`
			URL         string `json:"url"`
		} `json:"parts"`
		Envelope *struct {
			QueueID string   `json:"queue_id"`
			From    string   `json:"from"`
			To      []string `json:"to"`
			Helo    string   `json:"helo"`
		} `json:"envelope"`
		Transcript []apiTranscriptLine `json:"transcript"`
	}
	apiTranscriptLine struct {
		Kind string `json:"kind"`
		Text string `json:"text"`
	}
	apiErr struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
)

// listMessages returns GET /api/v1/messages with the query.
func (ws *webServer) list(t *testing.T, query string) apiList {
	t.Helper()
	var list apiList
	if code := getJSON(t, "GET", ws.URL+"/api/v1/messages"+query, &list); code != http.StatusOK {
		t.Fatalf("GET /api/v1/messages%s: status %d", query, code)
	}
	return list
}

// TestWebMessageAPI sends a multipart message and reads it back through
// every endpoint of the API: listed with its decoded subject, its parts,
// the raw bytes of its file, the session transcript; then deletes it.
func TestWebMessageAPI(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	sendWebMail(t, ws.Addr, webMessage("=?UTF-8?B?Y2Fmw6kgbWVuw7o=?= for today", "http://192.0.2.1/pixel.png"))
	stored := ws.Messages()[0]

	list := ws.list(t, "")
	if list.Total != 1 || len(list.Messages) != 1 {
		t.Fatalf("list: %+v", list)
	}
	item := list.Messages[0]
	want := apiSummary{ID: item.ID, Mailbox: "alice", From: "José Sender <jose@example.net>", ReturnPath: "jose@example.net",
		To: []string{"Alice <alice@example.org>"}, Cc: []string{"carol@example.org"}, Subject: "café menú for today",
		Date: time.Date(2006, 1, 2, 15, 4, 5, 0, time.FixedZone("", -7*3600)), Stored: item.Stored, Size: item.Size, Attachments: 1}
	if fmt.Sprint(item) != fmt.Sprint(want) {
		t.Errorf("list item:\n got %+v\nwant %+v", item, want)
	}
	file, err := os.ReadFile(stored.Paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if item.Size != int64(len(file)) {
		t.Errorf("size %d, the file has %d bytes", item.Size, len(file))
	}

	var m apiMessage
	if code := getJSON(t, "GET", ws.URL+"/api/v1/messages/"+item.ID, &m); code != http.StatusOK {
		t.Fatalf("GET message: %d", code)
	}
	if m.Subject != "café menú for today" || m.Text != "Café at ten." {
		t.Errorf("subject %q, text %q", m.Subject, m.Text)
	}
	if !strings.Contains(m.HTML, `<p id="greeting">Caf&eacute; at <b>ten</b>.</p><img id="pixel" src="http://192.0.2.1/pixel.png"`) {
		t.Errorf("html %q", m.HTML)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "menú.pdf" || m.Attachments[0].ContentType != "application/pdf" ||
		m.Attachments[0].Size != len("%PDF-1.4\n") {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	if fmt.Sprint(m.Cc) != "[carol@example.org]" {
		t.Errorf("cc %q", m.Cc)
	}
	if m.Headers[0].Name != "Return-Path" || m.Headers[1].Name != "Received" {
		t.Errorf("headers not in their order: %+v", m.Headers[:2])
	}
	if m.Envelope == nil || m.Envelope.QueueID != stored.ID || m.Envelope.From != "jose@example.net" || m.Envelope.Helo != "localhost" {
		t.Errorf("envelope %+v, want queue id %s", m.Envelope, stored.ID)
	}
	var transcript []string
	for _, l := range m.Transcript {
		transcript = append(transcript, l.Kind+": "+l.Text)
	}
	if got := strings.Join(transcript, "\n"); !strings.Contains(got, "C: MAIL FROM:<jose@example.net>") ||
		!strings.Contains(got, "S: 354 ") || !strings.Contains(got, "C: <message data: ") {
		t.Errorf("transcript:\n%s", got)
	}

	// raw is the stored file, byte for byte.
	raw, resp := getBytes(t, ws.URL+m.Raw)
	if !bytes.Equal(raw, file) {
		t.Errorf("raw differs from the stored file:\n%q\n%q", raw, file)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("raw: Content-Security-Policy %q", csp)
	}
	// A part is its decoded bytes, with its type and file name.
	pdf, resp := getBytes(t, ws.URL+m.Attachments[0].URL)
	if string(pdf) != "%PDF-1.4\n" || resp.Header.Get("Content-Type") != "application/pdf" ||
		resp.Header.Get("Content-Disposition") != "attachment; filename*=utf-8''men%C3%BA.pdf" {
		t.Errorf("attachment: %q, %q, %q", pdf, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}

	// DELETE removes the file and the listing.
	var del struct{ Deleted int }
	if code := getJSON(t, "DELETE", ws.URL+"/api/v1/messages/"+item.ID, &del); code != http.StatusOK || del.Deleted != 1 {
		t.Fatalf("DELETE: %d %+v", code, del)
	}
	if _, err := os.Stat(stored.Paths[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there after DELETE: %v", err)
	}
	if list := ws.list(t, ""); list.Total != 0 {
		t.Errorf("still listed after DELETE: %+v", list)
	}
	if code := getJSON(t, "DELETE", ws.URL+"/api/v1/messages/"+item.ID, nil); code != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", code)
	}
}

// TestWebListsTheMaildir starts a server on a Maildir that already holds
// messages, some moved to cur/ by a mail reader: all are listed, newest
// first. A file a mail reader moves while the server runs is still found.
func TestWebListsTheMaildir(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "Maildir")
	// Files named as older programs name them (<seconds>.<pid>.<host>):
	// ordered by their modification times.
	base := time.Now().Add(-time.Hour)
	files := []struct{ box, sub, name, subject string }{
		{"alice", "new", "1000.1.old", "oldest"},
		{"alice", "cur", "1001.2.old:2,S", "read by a mail reader"},
		{"bob", "new", "999.3.old", "=?ISO-8859-1?Q?for_b=F6b?="},
	}
	for i, f := range files {
		path := filepath.Join(root, f.box, f.sub, f.name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		msg := "Return-Path: <x@example.net>\nFrom: x@example.net\nTo: " + f.box + "@example.org\nSubject: " + f.subject + "\n\nbody\n"
		if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
		when := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
	}
	// Not messages: a dot file, a directory, a Maildir++ folder.
	os.WriteFile(filepath.Join(root, "alice", "new", ".hidden"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(root, "alice", "new", "subdir"), 0o700)
	os.MkdirAll(filepath.Join(root, "alice", ".Sent", "cur"), 0o700)
	os.WriteFile(filepath.Join(root, "alice", ".Sent", "cur", "1.x:2,S"), []byte("Subject: sent\n\n"), 0o600)

	ws := startWeb(t, smtpd.Config{DataDir: dir})
	list := ws.list(t, "")
	var subjects []string
	for _, m := range list.Messages {
		subjects = append(subjects, m.Mailbox+": "+m.Subject)
	}
	if got, want := strings.Join(subjects, "; "), "bob: for böb; alice: read by a mail reader; alice: oldest"; got != want {
		t.Fatalf("listed %q, want %q", got, want)
	}

	// A mail reader moves the oldest message to cur/ and flags it.
	oldest := list.Messages[2]
	if err := os.Rename(filepath.Join(root, "alice", "new", "1000.1.old"), filepath.Join(root, "alice", "cur", "1000.1.old:2,RS")); err != nil {
		t.Fatal(err)
	}
	raw, resp := getBytes(t, ws.URL+"/api/v1/messages/"+oldest.ID+"/raw")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), "Subject: oldest") {
		t.Fatalf("after the move: %s %q", resp.Status, raw)
	}
	// Deleted behind the server's back: 404, and no longer listed.
	os.Remove(filepath.Join(root, "alice", "cur", "1000.1.old:2,RS"))
	if code := getJSON(t, "GET", ws.URL+"/api/v1/messages/"+oldest.ID, nil); code != http.StatusNotFound {
		t.Errorf("GET of a file removed by someone else: %d, want 404", code)
	}
	if list := ws.list(t, ""); list.Total != 2 {
		t.Errorf("%d listed, want 2", list.Total)
	}
}

// TestWebSearchAndPages pages through the list and searches it.
func TestWebSearchAndPages(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	for i := range 12 {
		to := "alice@example.org"
		if i%3 == 0 {
			to = "bob@example.org"
		}
		sendWebMail(t, ws.Addr, []byte(fmt.Sprintf("Subject: =?UTF-8?Q?n=C2=BA_%02d?=\r\n\r\nbody\r\n", i)), to)
	}
	page := func(query string) string {
		list := ws.list(t, query)
		var s []string
		for _, m := range list.Messages {
			s = append(s, strings.TrimPrefix(m.Subject, "nº "))
		}
		return fmt.Sprintf("%d/%d %s", list.Matched, list.Total, strings.Join(s, ","))
	}
	for _, tc := range []struct{ query, want string }{
		{"", "12/12 11,10,09,08,07,06,05,04,03,02,01,00"},
		{"?limit=5", "12/12 11,10,09,08,07"},
		{"?limit=5&start=10", "12/12 01,00"},
		{"?start=12", "12/12 "},
		{"?query=BOB", "4/12 09,06,03,00"},                // recipient, any case
		{"?query=nº+0&limit=3&start=2", "10/12 07,06,05"}, // decoded subject
		{"?query=nobody", "0/12 "},
	} {
		if got := page(tc.query); got != tc.want {
			t.Errorf("GET /api/v1/messages%s: %s, want %s", tc.query, got, tc.want)
		}
	}
	// The page: the same search, and links to the pages around.
	html, _ := getBytes(t, ws.URL+"/?query=bob&limit=2&start=1")
	for _, want := range []string{`>nº 06</a>`, `>nº 03</a>`, `href="?limit=2&amp;query=bob&amp;start=0"`, `href="?limit=2&amp;query=bob&amp;start=3"`,
		`<span id="count">4</span> matching`} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("the list page lacks %s:\n%s", want, html)
		}
	}
	if bytes.Contains(html, []byte(">nº 09</a>")) || bytes.Contains(html, []byte(">nº 00</a>")) {
		t.Errorf("the list page shows messages outside its page")
	}
}

// TestWebErrors: every error is JSON with a fitting status, whatever the
// request, and nothing changes.
func TestWebErrors(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	sendWebMail(t, ws.Addr, webMessage("keep me", "data:,"))
	id := ws.list(t, "").Messages[0].ID
	for _, tc := range []struct {
		method, path string
		header       []string
		want         int
	}{
		{"GET", "/api/v1/messages/0123456789abcdef0123", nil, 404},
		{"GET", "/api/v1/messages/..%2F..%2F..%2Fetc%2Fpasswd", nil, 404},
		{"GET", "/api/v1/messages/%2Fetc%2Fpasswd/raw", nil, 404},
		{"GET", "/api/v1/messages/alice%2Fnew/raw", nil, 404},
		{"GET", "/api/v1/messages?limit=0", nil, 400},
		{"GET", "/api/v1/messages?limit=1001", nil, 400},
		{"GET", "/api/v1/messages?limit=x", nil, 400},
		{"GET", "/api/v1/messages?start=-1", nil, 400},
		{"GET", "/api/v1/messages?start=99999999999999999999", nil, 400},
		{"GET", "/api/v1/messages/" + id + "/part/x", nil, 400},
		{"GET", "/api/v1/messages/" + id + "/part/-1", nil, 400},
		{"GET", "/api/v1/messages/" + id + "/part/99", nil, 404},
		{"GET", "/api/v1/events?trace=yes", nil, 400},
		{"GET", "/messages/" + id + "/html?remote=2", nil, 400},
		{"GET", "/nowhere", nil, 404},
		{"GET", "/static/", nil, 404},
		{"GET", "/static/nothing.js", nil, 404},
		{"POST", "/api/v1/messages", nil, 405},
		{"PUT", "/api/v1/messages/" + id, nil, 405},
		{"DELETE", "/api/v1/messages/" + id + "/raw", nil, 405},
		{"POST", "/metrics", nil, 405},
		// Cross-site requests that would change something.
		{"DELETE", "/api/v1/messages/" + id, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"DELETE", "/api/v1/messages", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"DELETE", "/api/v1/messages", []string{"Origin", "http://evil.example"}, 403},
		// DNS rebinding: a name that is not loopback.
		{"GET", "/api/v1/messages", []string{"Host", "evil.example"}, 403},
		{"DELETE", "/api/v1/messages", []string{"Host", "evil.example:80"}, 403},
	} {
		req, err := http.NewRequest(tc.method, ws.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(tc.header); i += 2 {
			req.Header.Set(tc.header[i], tc.header[i+1])
		}
		if len(tc.header) > 0 && tc.header[0] == "Host" {
			req.Host = tc.header[1]
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiErr
		decodeErr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.want || decodeErr != nil || e.Status != tc.want || e.Error == "" {
			t.Errorf("%s %s %q: %s, body %+v (%v); want %d with a JSON error", tc.method, tc.path, tc.header, resp.Status, e, decodeErr, tc.want)
		}
	}
	// The same origin may delete; "localhost" is a loopback name.
	if list := ws.list(t, ""); list.Total != 1 {
		t.Fatalf("after the refused requests: %d messages, want 1", list.Total)
	}
	port := ws.URL[strings.LastIndexByte(ws.URL, ':')+1:]
	if code := getJSON(t, "DELETE", "http://localhost:"+port+"/api/v1/messages", nil,
		"Sec-Fetch-Site", "same-origin", "Origin", "http://localhost:"+port); code != http.StatusOK {
		t.Errorf("same-origin DELETE: %d", code)
	}
}

// TestWebHandlerMounted: the handler works mounted in a program's own mux
// below a prefix, and a server whose Config is bad answers 500.
func TestWebHandlerMounted(t *testing.T) {
	ts := smtpdtest.NewServer(t)
	mux := http.NewServeMux()
	mux.Handle("/mail/", http.StripPrefix("/mail", ts.SMTP.Handler()))
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	sendWebMail(t, ts.Addr, []byte("Subject: mounted\r\n\r\nhi\r\n"))
	page, resp := getBytes(t, "http://"+hl.Addr().String()+"/mail/")
	if resp.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(">mounted</a>")) ||
		!bytes.Contains(page, []byte(`href="static/style.css"`)) {
		t.Errorf("mounted list page: %s\n%s", resp.Status, page)
	}

	bad := &smtpd.Server{Config: smtpd.Config{MaxConns: -1}}
	rec := &recorder{header: http.Header{}}
	bad.Handler().ServeHTTP(rec, httpRequest(t, "GET", "/api/v1/messages"))
	if rec.status != http.StatusInternalServerError || !strings.Contains(rec.body.String(), "MaxConns") {
		t.Errorf("bad Config: %d %s", rec.status, rec.body.String())
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

func httpRequest(t *testing.T, method, path string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), method, "http://127.0.0.1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// eventStream is a client of GET /api/v1/events.
type eventStream struct {
	resp   *http.Response
	events chan sse
}

type sse struct{ name, data string }

// openEvents subscribes to the event stream and waits for its "ready"
// event: what happens from then on is in the stream.
func (ws *webServer) openEvents(t *testing.T, query string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", ws.URL+"/api/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	es := &eventStream{resp: resp, events: make(chan sse, 1024)}
	go func() {
		defer close(es.events)
		var ev sse
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			case line == "" && ev.name != "":
				es.events <- ev
				ev = sse{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		for range es.events {
		}
	})
	if ev := es.next(t, "ready"); ev.data != "{}" {
		t.Fatalf("ready event %+v", ev)
	}
	return es
}

// next returns the next event named name, skipping others.
func (es *eventStream) next(t *testing.T, name string) sse {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-es.events:
			if !ok {
				t.Fatalf("event stream ended before a %q event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event within 10 s", name)
		}
	}
}

// TestWebEvents: the stream announces each stored message with its list
// item and each deletion, and with ?trace=1 the session trace, with
// explanations and reply classes, whether or not the server traces to a
// terminal.
func TestWebEvents(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	// HEAD has the headers, and no stream to wait on.
	head, err := http.Head(ws.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD /api/v1/events: %s %q", head.Status, head.Header.Get("Content-Type"))
	}
	plain := ws.openEvents(t, "")
	traced := ws.openEvents(t, "?trace=1")

	sendWebMail(t, ws.Addr, webMessage("=?UTF-8?Q?=C3=A9v=C3=A9nement?=", "data:,"))
	var item apiSummary
	if err := json.Unmarshal([]byte(plain.next(t, "message").data), &item); err != nil {
		t.Fatal(err)
	}
	if item.Subject != "événement" || item.Mailbox != "alice" || item.Attachments != 1 {
		t.Errorf("message event %+v", item)
	}

	type line struct {
		Session, Kind, Text string
		Class               int
	}
	var lines []string
	for {
		var l line
		if err := json.Unmarshal([]byte(traced.next(t, "trace").data), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %d %s", l.Kind, l.Class, l.Text))
		if strings.HasPrefix(l.Text, "S: 250 2.0.0 Ok: queued as") {
			break
		}
	}
	trace := strings.Join(lines, "\n")
	for _, want := range []string{
		"event 0 * connected from 127.0.0.1:",
		"server 2 S: 220 ",
		"client 0 C: MAIL FROM:<jose@example.net>",
		"explain 0    ↳ sender accepted",
		"server 3 S: 354 ",
	} {
		if !strings.Contains(trace, "\n"+want) && !strings.HasPrefix(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	if strings.Contains(trace, "\x1b[") {
		t.Errorf("ANSI escapes in the trace events:\n%q", trace)
	}

	getJSON(t, "DELETE", ws.URL+"/api/v1/messages/"+item.ID, nil)
	if ev := plain.next(t, "deleted"); ev.data != `{"ids":["`+item.ID+`"]}` {
		t.Errorf("deleted event %q", ev.data)
	}
}

// TestWebShutdown: Shutdown ends open event streams and stops ServeWeb,
// and ServeWeb after Shutdown returns ErrServerClosed at once.
func TestWebShutdown(t *testing.T) {
	srv, err := smtpd.NewServer(smtpd.Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeWeb(l) }()
	ws := &webServer{URL: "http://" + l.Addr().String()}
	es := ws.openEvents(t, "?trace=1")
	if srv.HTTPAddr().String() != l.Addr().String() {
		t.Errorf("HTTPAddr() = %v, want %v", srv.HTTPAddr(), l.Addr())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open event stream: %v", err)
	}
	if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("ServeWeb returned %v", err)
	}
	for range es.events { // the stream ended
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeWeb(l2); !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("ServeWeb after Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", l2.Addr().String()); err == nil {
		t.Errorf("ServeWeb after Shutdown left its listener open")
	}
}

// TestWebNonLoopbackWarning: a listener on another address gets a warning
// in the log, and no Host check (the operator chose to be reachable).
func TestWebNonLoopbackWarning(t *testing.T) {
	logs := newSyncBuffer()
	srv, err := smtpd.NewServer(smtpd.Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := &addrListener{Listener: l, addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8025}}
	served := make(chan error, 1)
	go func() { served <- srv.ServeWeb(public) }()
	req, err := http.NewRequest("GET", "http://"+l.Addr().String()+"/api/v1/messages", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "mail.example.org"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET with Host mail.example.org on a public address: %s", resp.Status)
	}
	srv.Close()
	<-served
	if log := string(logs.bytes()); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "no login") {
		t.Errorf("no warning in the log:\n%s", log)
	}
}

// addrListener is a listener that says it listens on addr.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l *addrListener) Addr() net.Addr { return l.addr }

// TestWebLongFields: the list clips long header texts, the message has
// them whole.
func TestWebLongFields(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	subject := strings.Repeat("é", 150) // 300 bytes
	var to []string
	for i := range 30 {
		to = append(to, fmt.Sprintf("r%02d@example.org", i))
	}
	sendWebMail(t, ws.Addr, []byte("To: "+strings.Join(to, ", ")+"\r\nSubject: "+subject+"\r\n\r\nbody\r\n"))
	item := ws.list(t, "").Messages[0]
	if want := strings.Repeat("é", 98) + "…"; item.Subject != want || len(item.To) != 10 {
		t.Errorf("list item: subject %q (%d bytes), %d recipients; want it cut to %q and 10", item.Subject, len(item.Subject), len(item.To), want)
	}
	var m apiMessage
	getJSON(t, "GET", ws.URL+"/api/v1/messages/"+item.ID, &m)
	if m.Subject != subject || len(m.To) != 30 {
		t.Errorf("message: subject of %d bytes, %d recipients; want all", len(m.Subject), len(m.To))
	}
}

// TestWebTraceBesideTerminal: while a browser watches the trace, the
// terminal's trace is what it was (colored, and without explanations when
// Explain is off), and the browser gets the lines without colors, with the
// explanations.
func TestWebTraceBesideTerminal(t *testing.T) {
	terminal := newSyncBuffer()
	ws := startWeb(t, smtpd.Config{Trace: terminal, Verbose: true, TraceColor: smtpd.ColorAlways})
	traced := ws.openEvents(t, "?trace=1")
	sendWebMail(t, ws.Addr, []byte("Subject: beside\r\n\r\nhi\r\n"))
	var web []string
	for {
		ev := traced.next(t, "trace")
		web = append(web, ev.data)
		if strings.Contains(ev.data, "S: 221 ") {
			break
		}
	}
	events := strings.Join(web, "\n")
	if strings.Contains(events, `\u001b`) || !strings.Contains(events, `"kind":"explain"`) {
		t.Errorf("event stream: ANSI escapes, or no explanations:\n%s", events)
	}
	out := string(terminal.bytes())
	if !strings.Contains(out, "\x1b[") || strings.Contains(out, "↳") || !strings.Contains(out, "S: 250 2.0.0 Ok: queued as") {
		t.Errorf("terminal trace: want colors, no explanations:\n%q", out)
	}
}

// TestListenAndServeHTTPAddr: ListenAndServe serves the HTTP view on
// Config.HTTPAddr, a port alone meaning the loopback interface, and fails
// at once on an address it cannot listen on.
func TestListenAndServeHTTPAddr(t *testing.T) {
	bad := &smtpd.Server{Config: smtpd.Config{Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:notaport", DataDir: t.TempDir()}}
	if err := bad.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "notaport") {
		t.Errorf("ListenAndServe with a bad HTTPAddr: %v", err)
	}
	bad.Close()

	srv := &smtpd.Server{Config: smtpd.Config{Addr: "127.0.0.1:0", HTTPAddr: ":0", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	// Nothing tells when ListenAndServe has listened: look, briefly.
	deadline := time.Now().Add(10 * time.Second)
	for srv.HTTPAddr() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	addr := srv.HTTPAddr()
	if addr == nil || !strings.HasPrefix(addr.String(), "127.0.0.1:") {
		t.Fatalf("HTTPAddr() = %v, want 127.0.0.1:port", addr)
	}
	ws := &webServer{URL: "http://" + addr.String()}
	if list := ws.list(t, ""); list.Total != 0 {
		t.Errorf("a new server lists %d messages", list.Total)
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("ListenAndServe returned %v", err)
	}
}

// TestWebMessagePage: the message page holds every tab's content, under the
// page's policy; the HTML body is served for the iframe under a policy
// that loads nothing from elsewhere, with cid: images pointed at their
// parts.
func TestWebMessagePage(t *testing.T) {
	ws := startWeb(t, smtpd.Config{})
	msg := strings.ReplaceAll(`Subject: with a logo
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>Logo: <img src="cid:logo@example.net"> and <img src="https://tracker.example/p.gif"></p>
--rel
Content-Type: image/gif
Content-ID: <logo@example.net>
Content-Transfer-Encoding: base64

R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==
--rel--
`, "\n", "\r\n")
	sendWebMail(t, ws.Addr, []byte(msg))
	id := ws.list(t, "").Messages[0].ID

	page, resp := getBytes(t, ws.URL+"/messages/"+id)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("page policy %q", csp)
	}
	for _, want := range []string{"<h1>with a logo</h1>", `<iframe id="html-body" sandbox="" src="` + id + `/html"`,
		"<th>Subject</th><td>with a logo</td>", `href="../api/v1/messages/` + id + `/part/1">(unnamed)</a>`, "C: MAIL FROM:&lt;jose@example.net&gt;",
		`href="../api/v1/messages/` + id + `/raw"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("the message page lacks %s", want)
		}
	}

	body, resp := getBytes(t, ws.URL+"/messages/"+id+"/html")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src 'self' data:;") || !strings.HasSuffix(csp, "sandbox") {
		t.Errorf("HTML body policy %q", csp)
	}
	if want := `<img src="../../api/v1/messages/` + id + `/part/1">`; !bytes.Contains(body, []byte(want)) {
		t.Errorf("cid: image not pointed at its part: %s", body)
	}
	if !bytes.Contains(body, []byte(`<img src="https://tracker.example/p.gif">`)) {
		t.Errorf("the HTML body was changed beyond its cid: URLs: %s", body)
	}
	_, resp = getBytes(t, ws.URL+"/messages/"+id+"/html?remote=1")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "img-src * data:;") || strings.Contains(csp, "script") {
		t.Errorf("HTML body policy with remote content %q", csp)
	}
	gif, resp := getBytes(t, ws.URL+"/api/v1/messages/"+id+"/part/1")
	if resp.Header.Get("Content-Type") != "image/gif" || !bytes.HasPrefix(gif, []byte("GIF89a")) {
		t.Errorf("the logo part: %s %q", resp.Header.Get("Content-Type"), gif)
	}
}

// transcriptHas reports whether a transcript from the API has the line.
func transcriptHas(lines []apiTranscriptLine, kind, text string) bool {
	for _, l := range lines {
		if l.Kind == kind && l.Text == text {
			return true
		}
	}
	return false
}
