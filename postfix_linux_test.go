package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// Postfix as smtpd's client: a throwaway Postfix instance, with its own
// configuration directory and queue in the test's temporary directory,
// takes messages from its sendmail command and hands them to smtpd. Postfix
// starts its daemons as root (they then run as the postfix user), so these
// tests need root; without it they are skipped.

// The main.cf lines that README.md's "Behind Postfix, in front of Dovecot"
// shows; the tests write them with the ports of the moment in place of
// 2525 and 2424 (see withPort), and their own socket in place of
// /run/smtpd/lmtp.sock. TestREADMEMailStack checks that README.md shows
// them exactly as they are here.
const (
	postfixRelayConf = `relayhost = [127.0.0.1]:2525
`
	postfixLMTPConf = `mydestination = example.org
mailbox_transport = lmtp:inet:127.0.0.1:2424
`
	postfixLMTPSocketConf = `virtual_mailbox_domains = example.org
virtual_transport = lmtp:unix:/run/smtpd/lmtp.sock
`
)

// postfixMasterCf is the master.cf of a test instance: the services
// Postfix needs to take mail from sendmail and deliver it with the smtp
// and lmtp clients, none chrooted (the queue lives in a temporary
// directory), no network listener.
const postfixMasterCf = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
showq     unix  n       -       n       -       -       showq
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// postfixInstance is a running throwaway Postfix.
type postfixInstance struct {
	conf    string // its config_directory
	maillog string // its log (maillog_file)
}

// startPostfix starts a Postfix instance whose main.cf is a private setup
// followed by conf, and stops it when the test ends. It skips the test
// when Postfix is missing (fails it with SMTPD_REQUIRE_PEERS=1) or when
// not root.
func startPostfix(t *testing.T, conf string) *postfixInstance {
	t.Helper()
	for _, tool := range []string{"postfix", "sendmail", "postqueue"} {
		requirePeer(t, tool, "postfix")
	}
	requireAccount(t, "postfix", "postfix", false)
	requireAccount(t, "postdrop", "postfix", true)
	requireRoot(t, "postfix start runs as root, then starts its daemons as the postfix user")

	dir := t.TempDir()
	openUp(t, dir) // the daemons run as postfix and chdir to the queue
	p := &postfixInstance{conf: filepath.Join(dir, "conf"), maillog: filepath.Join(dir, "maillog")}
	queue := filepath.Join(dir, "queue")
	for _, d := range []string{p.conf, queue} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Logs go to a file of the instance (through postlogd), not to a
	// syslog the machine may not have. Nothing is looked up in the DNS.
	mainCf := "compatibility_level = 3.6\n" +
		"config_directory = " + p.conf + "\n" +
		"queue_directory = " + queue + "\n" +
		"data_directory = " + filepath.Join(dir, "data") + "\n" +
		"maillog_file = " + p.maillog + "\n" +
		"maillog_file_prefixes = " + dir + "\n" +
		"mail_owner = postfix\nsetgid_group = postdrop\n" +
		"inet_interfaces = loopback-only\ninet_protocols = ipv4\n" +
		"myhostname = postfix.test\nmydomain = postfix.test\nmyorigin = postfix.test\n" +
		"alias_maps =\nalias_database =\n" +
		"smtp_dns_support_level = disabled\n" +
		conf
	writeFile(t, filepath.Join(p.conf, "main.cf"), mainCf)
	writeFile(t, filepath.Join(p.conf, "master.cf"), postfixMasterCf)

	if out, err := mailToolErr(t, nil, "postfix", "-c", p.conf, "start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\nmaillog:\n%s", err, out, p.log())
	}
	pid, err := readPid(filepath.Join(queue, "pid", "master.pid"))
	if err != nil {
		t.Fatalf("postfix: %v\nmaillog:\n%s", err, p.log())
	}
	t.Cleanup(func() {
		stopDaemon(t, "postfix", pid, func() error {
			_, err := mailToolErr(t, nil, "postfix", "-c", p.conf, "stop")
			return err
		})
		if t.Failed() {
			t.Logf("postfix maillog:\n%s", p.log())
		}
	})
	return p
}

func (p *postfixInstance) log() []byte {
	data, _ := os.ReadFile(p.maillog)
	return data
}

// sendmail injects a message with Postfix's sendmail command; args are its
// options and the recipients.
func (p *postfixInstance) sendmail(t *testing.T, msg []byte, args ...string) {
	t.Helper()
	mailTool(t, msg, "sendmail", append([]string{"-C", p.conf, "-i"}, args...)...)
}

// queuedMessage is one message of `postqueue -j`.
type queuedMessage struct {
	Queue      string `json:"queue_name"`
	ID         string `json:"queue_id"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// queue lists the messages Postfix holds.
func (p *postfixInstance) queue(t *testing.T) []queuedMessage {
	t.Helper()
	out := mailTool(t, nil, "postqueue", "-c", p.conf, "-j")
	var msgs []queuedMessage
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte("{")) {
			continue // a warning
		}
		var m queuedMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("postqueue -j: %v in %q", err, sc.Bytes())
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// waitQueue polls Postfix's queue until done says it is as the test
// expects, and returns it; the test fails after mailStackWait.
func (p *postfixInstance) waitQueue(t *testing.T, done func([]queuedMessage) bool) []queuedMessage {
	t.Helper()
	deadline := time.Now().Add(mailStackWait)
	for {
		q := p.queue(t)
		if done(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix's queue is still %+v after %v", q, mailStackWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withPort returns a configuration snippet of README.md with the port of
// addr (a loopback address) in place of the example port.
func withPort(snippet, examplePort, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return strings.NewReplacer("127.0.0.1]:"+examplePort, "127.0.0.1]:"+port,
		"127.0.0.1:"+examplePort, "127.0.0.1:"+port).Replace(snippet)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mailStackMessage is the message the mail stack tests inject with
// sendmail: interopMessage (8-bit text, lines that start with dots, a line
// of 998 octets) with LF line endings, as a local program writes it.
func mailStackMessage(tool string, to ...string) []byte {
	return storedForm(interopMessage(tool, to...))
}

// mailStackFaults makes smtpd refuse two recipients at RCPT, one for good
// (Postfix bounces it) and one for now (Postfix keeps it in its queue).
const mailStackFaults = `rcpt match=bounced@* reply 550 5.1.1 No such user here
rcpt match=later@* reply 451 4.3.0 Mailbox busy, try again later
`

// TestPostfixRelaysOverSMTP has Postfix relay a message with four
// recipients to smtpd (relayhost), with DSN options. Two are stored, once
// each, byte for byte with Postfix's Received field on top; one is refused
// for good, and Postfix sends its sender a bounce through smtpd; one is
// refused for now, and stays in Postfix's queue. Since smtpd offers DSN,
// Postfix passes the DSN options on (and sends no "relayed" notice of its
// own): they arrive in Message.DSN.
func TestPostfixRelaysOverSMTP(t *testing.T) {
	t.Parallel()
	plan, err := smtpd.ParseFaultPlan(strings.NewReader(mailStackFaults))
	if err != nil {
		t.Fatal(err)
	}
	ts := smtpdtest.NewServer(t, smtpdtest.Faults(plan))
	pf := startPostfix(t, withPort(postfixRelayConf, "2525", ts.Addr))

	rcpts := []string{"alice@example.org", "carol@example.org", "bounced@example.org", "later@example.org"}
	msg := mailStackMessage("postfix-smtp", rcpts...)
	pf.sendmail(t, msg, append([]string{"-f", interopFrom, "-N", "success,failure", "-R", "hdrs", "-V", "env+id 1"}, rcpts...)...)

	ctx, cancel := context.WithTimeout(t.Context(), mailStackWait)
	defer cancel()
	delivered, err := ts.WaitFor(ctx, smtpdtest.To("alice@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	bounce, err := ts.WaitFor(ctx, smtpdtest.From(""))
	if err != nil {
		t.Fatal(err)
	}

	// The delivered copy: once for each of alice and carol, as sent.
	if want := rcpts[:2]; !slices.Equal(delivered.To, want) {
		t.Errorf("delivered to %q, want %q", delivered.To, want)
	}
	checkRelayed(t, delivered.Data, interopMessage("postfix-smtp", rcpts...))
	for _, box := range []string{"alice", "carol"} {
		names := dirNames(t, filepath.Join(ts.MaildirRoot, box, "new"))
		if len(names) != 1 {
			t.Errorf("%s/new holds %q, want one message", box, names)
		}
	}
	for _, box := range []string{"bounced", "later"} {
		if _, err := os.Stat(filepath.Join(ts.MaildirRoot, box)); err == nil {
			t.Errorf("mailbox %s exists, though smtpd refused the recipient", box)
		}
	}
	wantDSN := smtpd.DSN{Return: "HDRS", EnvelopeID: "env+id 1", Recipients: []smtpd.DSNRecipient{
		{Notify: []string{"SUCCESS", "FAILURE"}, OriginalType: "rfc822", Original: "alice@example.org"},
		{Notify: []string{"SUCCESS", "FAILURE"}, OriginalType: "rfc822", Original: "carol@example.org"},
	}}
	if !dsnEqual(delivered.DSN, wantDSN) {
		t.Errorf("Message.DSN = %+v, want %+v", delivered.DSN, wantDSN)
	}

	// The bounce, for bounced@ only, back to the sender through smtpd.
	if !slices.Equal(bounce.To, []string{interopFrom}) {
		t.Errorf("bounce went to %q, want %q", bounce.To, interopFrom)
	}
	for _, want := range []string{"Final-Recipient: rfc822; bounced@example.org", "550 5.1.1 No such user here", "Content-Type: multipart/report; report-type=delivery-status"} {
		if !bytes.Contains(bounce.Data, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce.Data)
		}
	}
	if bytes.Count(bounce.Data, []byte("Final-Recipient:")) != 1 {
		t.Errorf("bounce reports on more than bounced@example.org:\n%s", bounce.Data)
	}

	// Postfix keeps later@ (and only later@) in its deferred queue.
	q := pf.waitQueue(t, func(q []queuedMessage) bool { return len(q) == 1 && q[0].Queue == "deferred" })
	if r := q[0].Recipients; len(r) != 1 || r[0].Address != "later@example.org" || !strings.Contains(r[0].DelayReason, "451 4.3.0 Mailbox busy") {
		t.Errorf("deferred recipients = %+v, want later@example.org deferred with smtpd's 451", r)
	}
	if got := len(ts.Messages()); got != 2 {
		t.Errorf("smtpd stored %d messages, want 2 (the message and the bounce)", got)
	}
}

// checkRelayed checks a message that Postfix relayed: Postfix's own
// Received field first, then the message exactly as sendmail got it, in
// its wire form.
func checkRelayed(t *testing.T, data, wire []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("Received: by postfix.test (Postfix, from userid ")) {
		t.Errorf("relayed message does not start with Postfix's Received field:\n%s", data)
	}
	i := bytes.Index(data, []byte("\r\n"+string(wire[:strings.IndexByte(string(wire), '\r')])+"\r\n"))
	if i < 0 || !bytes.Equal(data[i+2:], wire) {
		t.Errorf("relayed message is not Postfix's Received field and the message as sent\n got: %q\nwant: …%q", data, wire)
	}
}

// dsnEqual compares DSN parameters.
func dsnEqual(a, b smtpd.DSN) bool {
	return a.Return == b.Return && a.EnvelopeID == b.EnvelopeID &&
		slices.EqualFunc(a.Recipients, b.Recipients, func(x, y smtpd.DSNRecipient) bool {
			return slices.Equal(x.Notify, y.Notify) && x.OriginalType == y.OriginalType && x.Original == y.Original
		})
}

// lmtpStackFaults makes the LMTP server refuse one recipient at RCPT, for
// good (Postfix bounces it), and one after the data, for now (Postfix
// keeps it in its queue).
const lmtpStackFaults = `rcpt match=nobody@* reply 550 5.1.1 No such user here
data-end match=bob@* reply 452 4.2.2 Mailbox full
`

// lmtpStackRecipients are the recipients the LMTP tests inject: alice and
// carol get the message, nobody is refused at RCPT, bob after the data.
var lmtpStackRecipients = []string{"alice@example.org", "bob@example.org", "carol@example.org", "nobody@example.org"}

// lmtpStackSender is the sender of the LMTP tests: a local address, so that
// Postfix delivers its bounce over LMTP too.
const lmtpStackSender = "sender@example.org"

// TestPostfixDeliversOverLMTP has Postfix deliver local mail to smtpd
// over LMTP on TCP (mailbox_transport), one recipient per transaction as
// local(8) hands them over. alice and carol get the 8-bit message once
// each; nobody is refused at RCPT and Postfix bounces it, over LMTP, to the
// sender; bob's mailbox is full after the data, and Postfix keeps bob
// alone in its queue.
func TestPostfixDeliversOverLMTP(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, lmtpStackFaults)
	pf := startPostfix(t, withPort(postfixLMTPConf, "2424", ts.Addr))
	msg := mailStackMessage("postfix-lmtp", lmtpStackRecipients...)
	pf.sendmail(t, msg, append([]string{"-f", lmtpStackSender}, lmtpStackRecipients...)...)

	ctx, cancel := context.WithTimeout(t.Context(), mailStackWait)
	defer cancel()
	for _, to := range []string{"alice@example.org", "carol@example.org"} {
		m, err := ts.WaitFor(ctx, smtpdtest.To(to))
		if err != nil {
			t.Fatal(err)
		}
		if !m.LMTP || !slices.Equal(m.To, []string{to}) {
			t.Errorf("message to %s: LMTP %v, To %q; want LMTP, %s alone", to, m.LMTP, m.To, to)
		}
		checkRelayed(t, m.Data, interopMessage("postfix-lmtp", lmtpStackRecipients...))
	}
	checkLMTPStack(t, ctx, ts, pf)
}

// TestPostfixDeliversOverLMTPUnixSocket has Postfix deliver to smtpd over
// LMTP on a Unix socket (virtual_transport), all recipients in one
// transaction: after the data smtpd answers for each, and Postfix takes
// alice and carol as delivered and keeps bob alone in its queue. The
// socket, mode 0660, is in a setgid directory of the postfix group, which
// lets Postfix's lmtp client in.
func TestPostfixDeliversOverLMTPUnixSocket(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, lmtpStackFaults)
	_, postfixGID := requireAccount(t, "postfix", "postfix", false)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	openUp(t, filepath.Dir(dir))
	if err := os.Chown(dir, 0, postfixGID); err != nil {
		t.Skipf("cannot give %s to the postfix group: %v", dir, err)
	}
	if err := os.Chmod(dir, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "lmtp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ts.SMTP.Serve(l) }()
	t.Cleanup(func() {
		ts.Close()
		<-served
	})
	pf := startPostfix(t, strings.ReplaceAll(postfixLMTPSocketConf, "/run/smtpd/lmtp.sock", sock))
	msg := mailStackMessage("postfix-lmtp-unix", lmtpStackRecipients...)
	pf.sendmail(t, msg, append([]string{"-f", lmtpStackSender}, lmtpStackRecipients...)...)

	ctx, cancel := context.WithTimeout(t.Context(), mailStackWait)
	defer cancel()
	m, err := ts.WaitFor(ctx, smtpdtest.To("alice@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.LMTP || !slices.Equal(m.To, []string{"alice@example.org", "carol@example.org"}) {
		t.Errorf("LMTP %v, To %q; want LMTP, alice and carol in one message", m.LMTP, m.To)
	}
	checkRelayed(t, m.Data, interopMessage("postfix-lmtp-unix", lmtpStackRecipients...))
	checkLMTPStack(t, ctx, ts, pf)
}

// checkLMTPStack checks, after Postfix delivered lmtpStackRecipients over
// LMTP: alice and carol have the message once each, bob and nobody not at
// all; the sender got Postfix's bounce for nobody; Postfix's queue keeps
// bob alone, deferred with smtpd's 452.
func checkLMTPStack(t *testing.T, ctx context.Context, ts *smtpdtest.Server, pf *postfixInstance) {
	t.Helper()
	bounce, err := ts.WaitFor(ctx, smtpdtest.From(""))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bounce.To, []string{lmtpStackSender}) ||
		!bytes.Contains(bounce.Data, []byte("Final-Recipient: rfc822; nobody@example.org")) ||
		!bytes.Contains(bounce.Data, []byte("550 5.1.1 No such user here")) ||
		bytes.Count(bounce.Data, []byte("Final-Recipient:")) != 1 {
		t.Errorf("bounce to %q:\n%s", bounce.To, bounce.Data)
	}
	q := pf.waitQueue(t, func(q []queuedMessage) bool { return len(q) == 1 && q[0].Queue == "deferred" })
	if r := q[0].Recipients; len(r) != 1 || r[0].Address != "bob@example.org" || !strings.Contains(r[0].DelayReason, "452 4.2.2 <bob@example.org> Mailbox full (in reply to end of DATA command)") {
		t.Errorf("deferred recipients = %+v, want bob@example.org with smtpd's 452 after the data", r)
	}
	for box, want := range map[string]int{"alice": 1, "carol": 1, "sender": 1, "bob": 0, "nobody": 0} {
		names, _ := os.ReadDir(filepath.Join(ts.MaildirRoot, box, "new"))
		if len(names) != want {
			t.Errorf("%s/new holds %d messages, want %d", box, len(names), want)
		}
	}
}
