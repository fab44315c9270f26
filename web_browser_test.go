package smtpd_test

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/client"
)

// The browser tests drive Debian's chromium, headless, through the DevTools
// protocol (chromedp): the page as a person sees it, its JavaScript and its
// Content-Security-Policy included. Without chromium they skip, unless
// SMTPD_REQUIRE_PEERS=1 (CI), where they fail.

// screenshots makes the browser tests write the README's pictures of the
// HTTP view: go test -run TestBrowser -screenshots .
var screenshots = flag.Bool("screenshots", false, "write the screenshots of the HTTP view in docs/ (README)")

// browserTimeout bounds each browser test.
const browserTimeout = 90 * time.Second

// newBrowser starts a headless chromium for the test, with a fresh profile,
// and returns the context of its first tab. The browser is killed when the
// test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := requirePeer(t, "chromium", "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests may run as root, where chromium refuses its sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers have a small /dev/shm
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
		// Keep the message's sandboxed iframe in the page's process,
		// where the test can look into it.
		chromedp.Flag("disable-features", "IsolateSandboxedIframes"),
		chromedp.WindowSize(1024, 640),
	}
	ctx, cancel := context.WithTimeout(t.Context(), browserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancel()
	})
	// Start the browser now, so that one that cannot start is reported
	// here.
	must(t, chromedp.Do(tab, chromedp.EmulateViewport(1024, 640)))
	return tab
}

// pixelServer is another site, on another port: it counts the requests a
// message's remote image makes.
type pixelServer struct {
	URL  string
	hits atomic.Int32
	hit  chan struct{}
}

func startPixelServer(t *testing.T) *pixelServer {
	t.Helper()
	ps := &pixelServer{hit: make(chan struct{}, 16)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gif, _ := base64.StdEncoding.DecodeString("R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==")
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.hits.Add(1)
		select {
		case ps.hit <- struct{}{}:
		default:
		}
		w.Header().Set("Content-Type", "image/gif")
		w.Write(gif)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	ps.URL = "http://" + l.Addr().String() + "/pixel.gif"
	return ps
}

// screenshot saves the tab's view to docs/name when -screenshots is set.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	if !*screenshots {
		return
	}
	png := run(t, tab, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join("docs", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote docs/%s (%d bytes)", name, len(png))
}

// run runs one action in the tab and returns its value; it fails the test
// on error.
func run[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(tab, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBrowserMailView opens the list in chromium, sees a message arrive
// without a reload, opens it, sees its HTML body in the sandboxed iframe
// with its script not run and its remote image blocked until asked for,
// and deletes it.
func TestBrowserMailView(t *testing.T) {
	tab := newBrowser(t)
	pixel := startPixelServer(t)
	ws := startWeb(t, smtpd.Config{})
	for _, m := range []struct{ to, subject string }{
		{"bob@example.org", "Your invoice for November"},
		{"alice@example.org", "=?UTF-8?Q?R=C3=A9union_de_l=E2=80=99=C3=A9quipe?="},
		{"carol@example.org", "Password reset requested"},
	} {
		sendWebMail(t, ws.Addr, []byte("From: Shop <shop@example.net>\r\nTo: <"+m.to+">\r\nSubject: "+m.subject+"\r\n\r\nHello.\r\n"), m.to)
	}

	// The list, subscribed to the event stream.
	must(t, chromedp.Do(tab,
		chromedp.Navigate(ws.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-stream="ready"]`)),
	))
	run(t, tab, chromedp.Evaluate[string](`window.notReloaded = "yes"`))

	// A message arrives: it appears on top, and the page was not reloaded.
	sendWebMail(t, ws.Addr, webMessage("=?UTF-8?Q?Caf=C3=A9_at_ten,_with_the_men=C3=BA?=", pixel.URL))
	must(t, chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(`#messages tbody tr.arrived td.subject a`))))
	subject := run(t, tab, chromedp.Text(chromedp.CSS(`#messages tbody tr:first-child td.subject a`)))
	marker := run(t, tab, chromedp.Evaluate[string](`window.notReloaded`))
	if subject != "Café at ten, with the menú" || marker != "yes" {
		t.Fatalf("first row %q, page not reloaded: %q", subject, marker)
	}
	if count := run(t, tab, chromedp.Text(chromedp.CSS(`#count`))); count != "4" {
		t.Errorf("count %q, want 4", count)
	}
	screenshot(t, tab, "web-list.png")

	// The message page: the HTML body in the sandboxed iframe, its
	// script not run, the remote image blocked. The iframe delays the
	// page's load event, so once the page is complete the iframe has
	// loaded, and tried its image.
	must(t, chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#messages tbody tr:first-child td.subject a`)),
		chromedp.WaitVisible(chromedp.CSS(`#html-body`)),
	))
	waitComplete(t, tab)
	sandbox := run(t, tab, chromedp.AttributeValue(chromedp.CSS(`#html-body`), "sandbox"))
	// Sandboxed without allow-same-origin: the page itself cannot reach
	// into it.
	opaque := run(t, tab, chromedp.Evaluate[bool](`document.getElementById("html-body").contentDocument === null`))
	if !sandbox.Exists || sandbox.Value != "" || !opaque {
		t.Errorf("iframe sandbox attribute %+v, opaque origin: %v; want an empty sandbox", sandbox, opaque)
	}
	if greeting := iframeText(t, tab, "#greeting"); greeting != "Café at ten." {
		t.Errorf("the iframe shows %q (a script ran, or the body is missing)", greeting)
	}
	if n := pixel.hits.Load(); n != 0 {
		t.Errorf("the remote image was fetched %d times before being asked for", n)
	}
	screenshot(t, tab, "web-message.png")

	// "Load remote content" lets the image through, still no script.
	must(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#load-remote`))))
	select {
	case <-pixel.hit:
	case <-time.After(10 * time.Second):
		t.Fatal("the remote image was not fetched after Load remote content")
	}
	must(t, chromedp.Do(tab, chromedp.WaitReady(chromedp.CSS(`#html-body[data-loaded="remote"]`))))
	if greeting := iframeText(t, tab, "#greeting"); greeting != "Café at ten." {
		t.Errorf("with remote content, the iframe shows %q", greeting)
	}

	// Delete: back to the list, the message gone from it and from the
	// Maildir.
	loc := run(t, tab, chromedp.Location())
	id, _, _ := strings.Cut(strings.TrimPrefix(loc, ws.URL+"/messages/"), "#")
	must(t, chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#delete`)),
		chromedp.WaitVisible(chromedp.CSS(`#messages`)),
	))
	waitComplete(t, tab)
	if rows := run(t, tab, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll('tr[data-id=%q]').length`, id))); rows != 0 {
		t.Errorf("the deleted message %s is still in the list", id)
	}
	if list := ws.list(t, ""); list.Total != 3 {
		t.Errorf("%d messages listed after the delete, want 3", list.Total)
	}
	for _, m := range ws.Messages() {
		if strings.Contains(m.Header().Get("Subject"), "Caf") {
			if _, err := os.Stat(m.Paths[0]); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the file is still in the Maildir: %v", err)
			}
		}
	}
}

// waitComplete waits until the tab's document has loaded, frames included.
func waitComplete(t *testing.T, tab context.Context) {
	t.Helper()
	run(t, tab, chromedp.Poll[bool](`document.readyState === "complete"`, chromedp.WithPollingTimeout(10*time.Second)))
}

// iframeText returns the text of the element sel in the message's iframe.
func iframeText(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	frames := run(t, tab, chromedp.Nodes(chromedp.CSS(`#html-body`)))
	return run(t, tab, chromedp.Text(chromedp.CSS(sel), chromedp.FromNode(frames[0])))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBrowserLiveTrace opens the live sessions page and watches sessions
// happen: their lines appear in the trace's colors, with explanations,
// although the server traces nothing to a terminal.
func TestBrowserLiveTrace(t *testing.T) {
	tab := newBrowser(t)
	ws := startWeb(t, smtpd.Config{})
	must(t, chromedp.Do(tab,
		chromedp.Navigate(ws.URL+"/live"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-stream="ready"]`)),
	))
	sendWebMail(t, ws.Addr, []byte("From: Teacher <teacher@example.edu>\r\nSubject: first mail\r\n\r\nHello from the lesson.\r\n"), "student@example.edu")
	// A session with mistakes, as in the README's lesson.
	sayLines(t, ws.Addr, "hola example", "HELO class.example", "MAIL FROM: <x@y>>", "RCPT TO:<a@example.edu>", "QUIT")

	run(t, tab, chromedp.Poll[bool](`[...document.querySelectorAll("#trace .c-5")].some(l => l.textContent.includes("S: 503"))`,
		chromedp.WithPollingTimeout(10*time.Second)))
	find := func(class, prefix string) string {
		return run(t, tab, chromedp.Evaluate[string](fmt.Sprintf(
			`[...document.querySelectorAll("#trace .%s .text")].map(l => l.textContent).find(t => t.startsWith(%q)) || ""`, class, prefix)))
	}
	if got := find("c-client", "C: MAIL FROM:"); !strings.HasPrefix(got, "C: MAIL FROM:<jose@example.net>") {
		t.Errorf("client line %q", got)
	}
	if got := find("c-2", "S: 250 2.0.0 Ok: queued as "); got == "" {
		t.Errorf("no 250 line in the trace's green")
	}
	if got := find("c-3", "S: 354 "); got == "" {
		t.Errorf("no 354 line in the trace's blue")
	}
	if got := find("c-5", "S: 500 5.5.2"); got == "" {
		t.Errorf("no 500 line in the trace's red")
	}
	if got := find("c-explain", "   ↳ sender accepted"); got == "" {
		t.Errorf("no explanation of the 250 after MAIL")
	}
	if got := find("c-stored", "stored for student"); got == "" {
		t.Errorf("the stored message is not announced")
	}
	color := run(t, tab, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("#trace .c-5")).color`))
	if color != "rgb(247, 118, 142)" {
		t.Errorf("a 5xx line is %s, want the trace's red", color)
	}
	screenshot(t, tab, "web-live.png")
}

// sayLines sends lines to the SMTP server at addr, each after the reply to
// the one before.
func sayLines(t *testing.T, addr string, lines ...string) {
	t.Helper()
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ReadReply(); err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		if _, err := c.Cmd(line); err != nil {
			t.Fatal(err)
		}
	}
}
