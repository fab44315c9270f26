package smtpscript

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tpe-protos/smtpd/client"
	"github.com/tpe-protos/smtpd/internal/scripthook"
)

// defaultTimeout bounds each network wait when $SMTP_TIMEOUT is unset.
const defaultTimeout = 10 * time.Second

// timeoutOf returns the script's bound on each network wait.
func timeoutOf(ts *testscript.TestScript) time.Duration {
	v := ts.Getenv("SMTP_TIMEOUT")
	if v == "" {
		return defaultTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		ts.Fatalf("$SMTP_TIMEOUT %q: not a positive duration", v)
	}
	return d
}

// played is how a dialogue went.
type played struct {
	transcript string
	err        error
}

// target is where and how a dialogue connects.
type target struct {
	addr     string
	implicit bool        // TLS from the start (RFC 8314)
	tls      *tls.Config // for implicit TLS and the TLS step
	timeout  time.Duration
	slow     time.Duration // with -slow: the gap between octets
}

// [!] smtp [flags] FILE...: see the package documentation.
func cmdSMTP(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("smtp", flag.ContinueOnError)
	addr := fs.String("addr", "", "")
	implicit := fs.Bool("tls", false, "")
	cafile := fs.String("cafile", "", "")
	slow := fs.Duration("slow", 0, "")
	sessions := fs.Int("sessions", 1, "")
	bg := fs.String("bg", "", "")
	if fs.Parse(args) != nil || fs.NArg() == 0 || *sessions < 1 || *sessions > 1 && *bg != "" {
		ts.Fatalf("usage: smtp [-addr HOST:PORT] [-tls] [-cafile FILE] [-slow D] [-sessions N | -bg NAME] FILE...")
	}
	tg := target{addr: *addr, implicit: *implicit, timeout: timeoutOf(ts), slow: *slow,
		tls: &tls.Config{InsecureSkipVerify: true}}
	if tg.addr == "" {
		tg.addr = ts.Getenv("SMTP_ADDR")
		if tg.implicit {
			tg.addr = ts.Getenv("TLS_ADDR")
		}
	}
	if *cafile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ts.ReadFile(*cafile))) {
			ts.Fatalf("smtp: no certificate in %s", *cafile)
		}
		host, _, _ := net.SplitHostPort(tg.addr)
		tg.tls = &tls.Config{RootCAs: pool, ServerName: host}
	}
	files := fs.Args()
	if *bg != "" {
		if neg {
			ts.Fatalf("unsupported: ! smtp -bg (use ! smtp-wait)")
		}
		d := readDialogue(ts, files)
		done := make(chan played, 1)
		resume := make(chan struct{})
		stateOf(ts).dialogs[*bg] = done
		stateOf(ts).resumes[*bg] = resume
		d.Resume = resume
		observe := observerOf(ts, files)
		go func() { done <- observe(play(tg, d)) }()
		return
	}
	res := playSessions(ts, tg, files, *sessions)
	checkPlayed(ts, neg, observerOf(ts, files)(res))
}

// readDialogue parses the dialogue files as one dialogue.
func readDialogue(ts *testscript.TestScript, files []string) *client.Dialogue {
	var d *client.Dialogue
	for _, name := range files {
		part, err := client.ParseDialogue(strings.NewReader(ts.ReadFile(name)))
		if err != nil {
			ts.Fatalf("smtp: %s: %v", name, err)
		}
		if len(files) > 1 {
			part.Name = name
		}
		if d == nil {
			d = part
		} else {
			d.Append(part)
		}
	}
	return d
}

// observerOf returns a function that tells the script's observer (see
// package scripthook) about a dialogue, and returns it unchanged.
func observerOf(ts *testscript.TestScript, files []string) func(played) played {
	obs, _ := ts.Value(scripthook.Key{}).(scripthook.Observer)
	return func(p played) played {
		if obs != nil {
			obs(scripthook.Dialogue{Files: files, Transcript: p.transcript, Err: p.err})
		}
		return p
	}
}

// playSessions plays the dialogue in n sessions at once. Their WAIT steps
// wait until every session has reached its own (or ended), so that all n
// are open at the same time. The transcript is that of the first session
// that failed, or of the first one.
func playSessions(ts *testscript.TestScript, tg target, files []string, n int) played {
	if n == 1 {
		return play(tg, readDialogue(ts, files))
	}
	b := newBarrier(n, tg.timeout)
	results := make([]played, n)
	var wg sync.WaitGroup
	for i := range n {
		d := readDialogue(ts, files)
		d.Wait = b.wait
		wg.Go(func() {
			results[i] = play(tg, d)
			b.leave()
		})
	}
	wg.Wait()
	for i, res := range results {
		if res.err != nil {
			res.transcript = fmt.Sprintf("-- session %d of %d\n%s", i+1, n, res.transcript)
			res.err = fmt.Errorf("session %d of %d: %w", i+1, n, res.err)
			return res
		}
	}
	res := results[0]
	res.transcript = fmt.Sprintf("-- session 1 of %d (all %d went as written)\n%s", n, n, res.transcript)
	return res
}

// barrier holds WAIT steps until every session has arrived or left.
type barrier struct {
	mu      sync.Mutex
	waiting int // sessions at a WAIT step or ended
	n       int
	all     chan struct{} // closed when waiting reaches n
	timeout time.Duration
}

func newBarrier(n int, timeout time.Duration) *barrier {
	return &barrier{n: n, all: make(chan struct{}), timeout: timeout}
}

func (b *barrier) arrive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting++; b.waiting == b.n {
		close(b.all)
	}
}

// wait is a session's WAIT step.
func (b *barrier) wait() error {
	b.arrive()
	select {
	case <-b.all:
		return nil
	case <-time.After(b.timeout):
		return fmt.Errorf("the other sessions did not all get this far within %v", b.timeout)
	}
}

// leave counts a session that ended: it waits for nobody.
func (b *barrier) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting < b.n {
		b.waiting++
		if b.waiting == b.n {
			close(b.all)
		}
	}
}

// play connects and plays d; the transcript is bounded (see transcriptCap).
func play(tg target, d *client.Dialogue) played {
	tr := &cappedTranscript{}
	dialer := &net.Dialer{Timeout: tg.timeout}
	conn, err := dialer.Dial("tcp", tg.addr)
	if err != nil {
		return played{err: err}
	}
	if tg.slow > 0 {
		conn = &slowConn{Conn: conn, gap: tg.slow, timeout: tg.timeout}
	}
	if tg.implicit {
		tc := tls.Client(conn, tg.tls)
		tc.SetDeadline(time.Now().Add(tg.timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return played{err: fmt.Errorf("TLS handshake: %w", err)}
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	c := client.NewClient(conn)
	defer c.Close()
	c.TLSConfig = tg.tls
	c.Transcript = tr
	c.Timeout = tg.timeout
	err = d.Play(c)
	return played{transcript: tr.String(), err: err}
}

// checkPlayed writes the transcript to stdout and, for a dialogue that
// failed as expected, the error to stderr.
func checkPlayed(ts *testscript.TestScript, neg bool, res played) {
	ts.Stdout().Write([]byte(res.transcript))
	switch {
	case res.err != nil && !neg:
		ts.Fatalf("smtp: %v", res.err)
	case res.err != nil:
		fmt.Fprintf(ts.Stderr(), "smtp: %v\n", res.err)
	case neg:
		ts.Fatalf("smtp: dialogue succeeded unexpectedly")
	}
}

// [!] smtp-wait NAME: see the package documentation.
func cmdSMTPWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: smtp-wait NAME")
	}
	done, ok := stateOf(ts).dialogs[args[0]]
	if !ok {
		ts.Fatalf("smtp-wait: no dialogue %q", args[0])
	}
	wait := 3 * timeoutOf(ts)
	select {
	case res := <-done:
		checkPlayed(ts, neg, res)
	case <-time.After(wait):
		ts.Fatalf("smtp-wait: dialogue %q still running after %v", args[0], wait)
	}
}

// smtp-continue NAME: see the package documentation.
func cmdSMTPContinue(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: smtp-continue NAME")
	}
	resume, ok := stateOf(ts).resumes[args[0]]
	if !ok {
		ts.Fatalf("smtp-continue: no dialogue %q", args[0])
	}
	select {
	case resume <- struct{}{}:
	case <-time.After(timeoutOf(ts)):
		ts.Fatalf("smtp-continue: dialogue %q is not at a WAIT step", args[0])
	}
}

// need-ext [-addr HOST:PORT] EXT...: see the package documentation.
func cmdNeedExt(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("need-ext", flag.ContinueOnError)
	addr := fs.String("addr", "", "")
	if neg || fs.Parse(args) != nil || fs.NArg() == 0 {
		ts.Fatalf("usage: need-ext [-addr HOST:PORT] EXT...")
	}
	if *addr == "" {
		*addr = ts.Getenv("SMTP_ADDR")
	}
	var wants []*regexp.Regexp
	for _, ext := range fs.Args() {
		re, err := regexp.Compile("(?i)^(?:" + ext + ")$")
		ts.Check(err)
		wants = append(wants, re)
	}
	s := setupOf(ts, "need-ext")
	lines, refused := ehloLines(ts, *addr)
	if refused != "" {
		s.t.Skip("the server refuses EHLO: " + refused)
	}
	for i, re := range wants {
		line := matchingLine(re, lines)
		if line == "" {
			s.t.Skip(fmt.Sprintf("the server does not advertise %s", fs.Arg(i)))
		}
		keyword, params, _ := strings.Cut(line, " ")
		ts.Setenv("EXT_"+envName(keyword), params)
	}
}

// ehloLines says EHLO to the server at addr and returns the lines of its
// reply after the first, or the reply when it is not 250.
func ehloLines(ts *testscript.TestScript, addr string) (lines []string, refused string) {
	timeout := timeoutOf(ts)
	conn, err := net.DialTimeout("tcp", addr, timeout)
	ts.Check(err)
	c := client.NewClient(conn)
	defer c.Close()
	c.Timeout = timeout
	greeting, err := c.ReadReply()
	ts.Check(err)
	if greeting.Class() != 2 {
		ts.Fatalf("need-ext: the server greets with %q", greeting.String())
	}
	r, err := c.Cmd("EHLO smtpscript.test")
	ts.Check(err)
	c.Cmd("QUIT")
	if r.Code != 250 {
		return nil, r.String()
	}
	return r.Lines[1:], ""
}

func matchingLine(re *regexp.Regexp, lines []string) string {
	for _, line := range lines {
		if re.MatchString(line) {
			return line
		}
	}
	return ""
}

// envName makes an EHLO keyword fit an environment variable's name.
func envName(keyword string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			return r
		}
		return '_'
	}, keyword)
}

// Shapes of the dialogues fill-dialogue writes.
const (
	fillLine  = 80        // octets of each message data line, CRLF included
	fillChunk = 32 * 1024 // octets of each R: step of a long line
)

// fill-dialogue [-line PREFIX] FILE OCTETS: see the package documentation.
func cmdFillDialogue(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("fill-dialogue", flag.ContinueOnError)
	prefix := fs.String("line", "", "")
	if neg || fs.Parse(args) != nil || fs.NArg() != 2 {
		ts.Fatalf("usage: fill-dialogue [-line PREFIX] FILE OCTETS")
	}
	octets, err := strconv.ParseInt(fs.Arg(1), 10, 64)
	if err != nil || octets < 1 || octets > 1<<30 {
		ts.Fatalf("fill-dialogue: %q is not a number of octets from 1 to 2^30", fs.Arg(1))
	}
	var b strings.Builder
	if *prefix != "" {
		writeLongLine(&b, *prefix, int(octets))
	} else {
		writeDataLines(&b, int(octets))
	}
	ts.Check(os.WriteFile(ts.MkAbs(fs.Arg(0)), []byte(b.String()), 0o666))
}

// writeDataLines writes C: steps sending letters in lines of fillLine
// octets, CRLF included, octets of them in all (rounded up to a line).
func writeDataLines(b *strings.Builder, octets int) {
	letters := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 4)[:fillLine-2]
	for sent := 0; sent < octets; sent += fillLine {
		b.WriteString("C: " + letters + "\n")
	}
}

// writeLongLine writes R: steps sending one line of octets octets, CRLF
// included, that starts with prefix.
func writeLongLine(b *strings.Builder, prefix string, octets int) {
	line := prefix + strings.Repeat("x", max(octets-2-len(prefix), 0)) + "\r\n"
	for len(line) > 0 {
		n := min(len(line), fillChunk)
		b.WriteString("R: " + strconv.Quote(line[:n]) + "\n")
		line = line[n:]
	}
}

// slowConn writes one octet at a time, gap apart: a slow client.
type slowConn struct {
	net.Conn
	gap     time.Duration
	timeout time.Duration
}

func (c *slowConn) Write(p []byte) (int, error) {
	for i := range p {
		if i > 0 {
			time.Sleep(c.gap)
		}
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// Bounds of a transcript: a dialogue may send megabytes.
const (
	transcriptCap     = 64 * 1024 // octets kept: half from the start, half from the end
	transcriptLineCap = 1024      // octets kept of one line
)

// cappedTranscript keeps the start and the end of a transcript (where a
// dialogue fails), lines cut to transcriptLineCap octets, transcriptCap
// octets in all.
type cappedTranscript struct {
	mu      sync.Mutex
	head    strings.Builder
	tail    []string // lines after the head, oldest first
	tailLen int      // octets in tail
	dropped int      // octets between head and tail not kept
}

func (t *cappedTranscript) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		if len(line) > transcriptLineCap {
			line = fmt.Sprintf("%s… (%d more octets)\n", line[:transcriptLineCap], len(line)-transcriptLineCap)
		}
		if len(t.tail) == 0 && t.head.Len()+len(line) <= transcriptCap/2 {
			t.head.WriteString(line)
			continue
		}
		t.tail = append(t.tail, line)
		t.tailLen += len(line)
		for t.tailLen > transcriptCap/2 {
			t.dropped += len(t.tail[0])
			t.tailLen -= len(t.tail[0])
			t.tail = t.tail[1:]
		}
	}
	return len(p), nil
}

func (t *cappedTranscript) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := ""
	if t.dropped > 0 {
		cut = fmt.Sprintf("-- %d octets of transcript not shown\n", t.dropped)
	}
	return t.head.String() + cut + strings.Join(t.tail, "")
}
