package smtpd_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/chromedp"
)

// pythonSendMail builds a message with Python's email package (its MIME
// writer, not ours) and sends it with smtplib: text and HTML alternatives,
// an attachment with a non-ASCII name (RFC 2231), a non-ASCII subject
// (RFC 2047).
const pythonSendMail = `
import smtplib, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"] = "Zoë Python <zoe@example.net>"
msg["To"] = "alice@example.org"
msg["Subject"] = "Ünïcödé from smtplib"
msg.set_content("Text part from Python.\n")
msg.add_alternative("<p>HTML part from <i>Python</i>.</p>\n", subtype="html")
msg.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv", filename="données.csv")
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=15) as s:
    s.send_message(msg)
`

// TestWebCommand runs the smtpd command with -http and sends it two
// multipart messages, one with swaks and one with Python's smtplib: each
// appears in the API with its subject, text, HTML and attachment name
// decoded, and on the event stream; raw gives the stored bytes; the page,
// rendered by chromium, shows the subject; DELETE removes the message from
// the list and from the Maildir.
func TestWebCommand(t *testing.T) {
	swaks := requirePeer(t, "swaks", "swaks")
	python := requirePeer(t, "python3", "python3")
	dir := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir(), "NO_COLOR=1"}
	// A port alone means the loopback interface.
	p, err := startSmtpd(dir, env, "-d", "data", "-hostname", "mx.test", "-http", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.exited() {
			p.kill()
		}
	})
	if !strings.HasPrefix(p.httpAddr, "127.0.0.1:") {
		t.Fatalf("-http :0 listens on %q, want 127.0.0.1", p.httpAddr)
	}
	ws := &webServer{URL: "http://" + p.httpAddr}
	events := ws.openEvents(t, "")

	// swaks sends the message as it is: see TestInteropSwaks for the
	// final dot.
	file := writeTemp(t, "msg.eml", append(webMessage("=?UTF-8?Q?sent_by_sw=C3=A4ks?=", "data:,"), ".\r\n"...))
	runPeer(t, nil, swaks, "--server", p.addr, "--helo", "swaks.test", "--from", "jose@example.net",
		"--to", "alice@example.org", "--data", "@"+file, "--timeout", "15")
	fromSwaks := decodeSummary(t, events.next(t, "message").data)

	host, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	runPeer(t, nil, python, "-c", pythonSendMail, host, port)
	fromPython := decodeSummary(t, events.next(t, "message").data)

	for _, tc := range []struct {
		sent                                apiSummary
		subject, text, html, attachment, cc string
	}{
		{fromSwaks, "sent by swäks", "Café at ten.", `<p id="greeting">Caf&eacute; at <b>ten</b>.</p>`, "menú.pdf", "carol@example.org"},
		{fromPython, "Ünïcödé from smtplib", "Text part from Python.", "<p>HTML part from <i>Python</i>.</p>", "données.csv", ""},
	} {
		var m apiMessage
		if code := getJSON(t, "GET", ws.URL+"/api/v1/messages/"+tc.sent.ID, &m); code != http.StatusOK {
			t.Fatalf("GET %s: %d", tc.sent.ID, code)
		}
		if tc.sent.Subject != tc.subject || m.Subject != tc.subject || strings.TrimSpace(m.Text) != tc.text ||
			!strings.Contains(m.HTML, tc.html) || len(m.Attachments) != 1 || m.Attachments[0].Name != tc.attachment {
			t.Errorf("message %q: subject %q, text %q, html %q, attachments %+v", tc.subject, m.Subject, m.Text, m.HTML, m.Attachments)
		}
		// The smtpd command keeps no transcripts but for the view; the
		// transcript goes past the data to the final reply.
		if m.Envelope == nil || !transcriptHas(m.Transcript, "C", ".") || !transcriptHas(m.Transcript, "S", "250 2.0.0 Ok: queued as "+m.Envelope.QueueID) {
			t.Errorf("message %q: envelope %+v, transcript %+v", tc.subject, m.Envelope, m.Transcript)
		}
		// raw is the file in the Maildir, byte for byte.
		raw, _ := getBytes(t, ws.URL+m.Raw)
		if file := storedFileWith(t, filepath.Join(dir, "data", "Maildir", "alice"), raw); file == "" {
			t.Errorf("message %q: raw matches no file of the mailbox:\n%s", tc.subject, raw)
		}
	}

	// The page, in a real browser, shows both subjects.
	if list := pageSubjects(t, ws.URL); list != "Ünïcödé from smtplib|sent by swäks" {
		t.Errorf("chromium shows the subjects %q", list)
	}

	// DELETE: gone from the list, the Maildir and, for others, announced.
	if code := getJSON(t, "DELETE", ws.URL+"/api/v1/messages/"+fromSwaks.ID, nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	if ev := events.next(t, "deleted"); ev.data != `{"ids":["`+fromSwaks.ID+`"]}` {
		t.Errorf("deleted event %s", ev.data)
	}
	if list := ws.list(t, ""); list.Total != 1 || list.Messages[0].ID != fromPython.ID {
		t.Errorf("after DELETE the list is %+v", list)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "data", "Maildir", "alice", "*", "*")); len(names) != 1 {
		t.Errorf("after DELETE the mailbox holds %q, want one file", names)
	}

	if err := p.stop(syscall.SIGTERM, mcWait); err != nil {
		t.Errorf("smtpd exit: %v\nstderr:\n%s", err, p.stderr.bytes())
	}
}

func decodeSummary(t *testing.T, data string) apiSummary {
	t.Helper()
	var s apiSummary
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	return s
}

// storedFileWith returns the file of the Maildir mailbox (new/ or cur/)
// whose content is data, or "".
func storedFileWith(t *testing.T, mailbox string, data []byte) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(mailbox, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if b, err := os.ReadFile(name); err == nil && bytes.Equal(b, data) {
			return name
		}
	}
	return ""
}

// pageSubjects opens the list page in chromium and returns the subjects it
// shows, joined with "|".
func pageSubjects(t *testing.T, url string) string {
	t.Helper()
	tab := newBrowser(t)
	must(t, chromedp.Do(tab, chromedp.Navigate(url+"/"), chromedp.WaitVisible(chromedp.CSS(`#messages td.subject a`))))
	return run(t, tab, chromedp.Evaluate[string](`[...document.querySelectorAll("#messages td.subject a")].map(a => a.textContent).join("|")`))
}
