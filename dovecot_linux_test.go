package smtpd_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// Dovecot as the reader of what smtpd stores: a throwaway Dovecot, with
// its configuration, sockets and state in the test's temporary directory,
// serves smtpd's Maildirs over IMAP on a loopback port, and Python's
// imaplib, a client nobody here wrote, reads them.
//
// smtpd and Dovecot must share the mail's owner, as they would in a real
// installation (one "vmail" user). Dovecot never accesses mail as root, so
// a test running as root runs smtpd, the real command as a child process,
// as the user nobody; otherwise everything runs as the test's own user.

// dovecotConf is the dovecot.conf of README.md's "Behind Postfix, in front
// of Dovecot"; the test writes it with its own Maildir root in place of
// /var/mail/smtpd and its mail user in place of vmail. TestREADMEMailStack
// checks that README.md shows it exactly as it is here.
const dovecotConf = `mail_location = maildir:/var/mail/smtpd/%u
userdb {
  driver = static
  args = uid=vmail gid=vmail home=/var/mail/smtpd/%u
}
`

// imapScript is the IMAP client: Python's imaplib. "fetch" opens INBOX
// read-only (EXAMINE, which leaves new/ as it is) and prints each message
// with its flags, as JSON; "seen N" sets \Seen on message N.
const imapScript = `
import base64, imaplib, json, re, sys
port, user, password, action = sys.argv[1:5]
imap = imaplib.IMAP4("127.0.0.1", int(port), timeout=20)
imap.login(user, password)
if action == "fetch":
    imap.select("INBOX", readonly=True)
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    msgs = []
    for item in data:
        if isinstance(item, tuple):
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode()
            msgs.append({"flags": flags.split(), "data": base64.b64encode(item[1]).decode()})
    print(json.dumps(msgs))
elif action == "seen":
    imap.select("INBOX")
    typ, data = imap.store(sys.argv[5], "+FLAGS", "(\\Seen)")
    if typ != "OK":
        sys.exit("STORE: %s %s" % (typ, data))
    imap.close()
imap.logout()
`

// imapMessage is a message as imaplib fetched it.
type imapMessage struct {
	Flags []string `json:"flags"`
	Data  []byte   `json:"data"` // base64 in the JSON
}

// mailUser is who owns the mail: nobody when the test runs as root (Dovecot
// refuses root), the test's own user otherwise.
type mailUser struct {
	uid, gid int
	name     string
	switched bool // smtpd must run as this user, not the test's
}

func mailOwner(t *testing.T) mailUser {
	t.Helper()
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return mailUser{uid: os.Getuid(), gid: os.Getgid(), name: u.Username}
	}
	uid, gid := requireAccount(t, "nobody", "base-passwd", false)
	return mailUser{uid: uid, gid: gid, name: "nobody", switched: true}
}

// dovecotInstance is a running throwaway Dovecot.
type dovecotInstance struct {
	port int // where it serves IMAP, or LMTP
	log  string
}

// startIMAP starts Dovecot serving the Maildirs under root, owned by
// owner, over IMAP to the user alice (password "secret"); see startDovecot.
func startIMAP(t *testing.T, root string, owner mailUser) *dovecotInstance {
	t.Helper()
	requireDovecotPart(t, "imapd", "dovecot-imapd")
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	writeFile(t, passwd, "alice:{PLAIN}secret\n")
	conf := strings.NewReplacer("/var/mail/smtpd", root,
		"uid=vmail gid=vmail", fmt.Sprintf("uid=%d gid=%d", owner.uid, owner.gid)).Replace(dovecotConf) +
		"disable_plaintext_auth = no\nauth_mechanisms = plain\n" +
		"passdb {\n  driver = passwd-file\n  args = " + passwd + "\n}\n" +
		"service imap-login {\n  inet_listener imap {\n    address = 127.0.0.1\n    port = PORT\n  }\n" +
		"  inet_listener imaps {\n    port = 0\n  }\n  chroot =\n}\n"
	return startDovecot(t, "imap", conf, owner, "* OK")
}

// startLMTPProxy starts Dovecot's LMTP server as a proxy that hands every
// recipient to the LMTP server at backend; see startDovecot.
func startLMTPProxy(t *testing.T, backend string) *dovecotInstance {
	t.Helper()
	requireDovecotPart(t, "lmtpd", "dovecot-lmtpd")
	host, port, _ := net.SplitHostPort(backend)
	owner := mailOwner(t)
	conf := "lmtp_proxy = yes\n" +
		"passdb {\n  driver = static\n  args = proxy=y host=" + host + " port=" + port + " nopassword=y\n}\n" +
		fmt.Sprintf("userdb {\n  driver = static\n  args = uid=%d gid=%d\n}\n", owner.uid, owner.gid) +
		"service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = PORT\n  }\n}\n"
	return startDovecot(t, "lmtp", conf, owner, "220 ")
}

// requireDovecotPart skips the test when Dovecot, or its server of
// protocol part, is missing (fails it with SMTPD_REQUIRE_PEERS=1).
func requireDovecotPart(t *testing.T, part, pkg string) {
	t.Helper()
	requirePeer(t, "dovecot", "dovecot-core")
	if _, err := os.Stat("/usr/share/dovecot/protocols.d/" + part + ".protocol"); err != nil {
		if os.Getenv(peersEnv) == "1" {
			t.Fatalf("Dovecot's %s is not installed and %s=1: install %s", part, peersEnv, pkg)
		}
		t.Skipf("Dovecot's %s is not installed (Debian package %s)", part, pkg)
	}
}

// startDovecot starts a private Dovecot serving protocol, with conf (whose
// listener port is written PORT, for a free one), and stops it when the
// test ends; greeting is how its server greets, once it is ready. Dovecot
// runs its processes as its own users (dovecot, dovenull) when it can, as
// root; otherwise all as owner.
func startDovecot(t *testing.T, protocol, conf string, owner mailUser, greeting string) *dovecotInstance {
	t.Helper()
	internal, group, login := "dovecot", "dovecot", "dovenull"
	if os.Geteuid() == 0 {
		requireAccount(t, "dovecot", "dovecot-core", false)
		requireAccount(t, "dovenull", "dovecot-core", false)
	} else {
		g, err := user.LookupGroupId(strconv.Itoa(owner.gid))
		if err != nil {
			t.Fatal(err)
		}
		internal, group, login = owner.name, g.Name, owner.name
	}
	dir := t.TempDir()
	openUp(t, dir) // the login process runs as dovenull
	d := &dovecotInstance{log: filepath.Join(dir, "dovecot.log")}
	for attempt := 1; ; attempt++ {
		d.port = freePort(t)
		path := filepath.Join(dir, "dovecot.conf")
		writeFile(t, path, strings.ReplaceAll(conf, "PORT", strconv.Itoa(d.port))+
			// The rest makes it a private instance: its own
			// sockets, state and log, one protocol on the free port.
			"protocols = "+protocol+"\nlisten = 127.0.0.1\nssl = no\n"+
			"base_dir = "+filepath.Join(dir, "run")+"\n"+
			"state_dir = "+filepath.Join(dir, "state")+"\n"+
			"log_path = "+d.log+"\n"+
			"default_internal_user = "+internal+"\ndefault_internal_group = "+group+"\ndefault_login_user = "+login+"\n"+
			"service anvil {\n  chroot =\n}\n")
		// In the foreground (-F), so that its pid is the child's and
		// its end is seen at once.
		cmd := exec.Command("dovecot", "-F", "-c", path)
		out := newSyncBuffer()
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		exited, err := waitGreeting(d.port, greeting, done)
		if err == nil {
			t.Cleanup(func() {
				stopDaemon(t, "dovecot", cmd.Process.Pid, nil)
				<-done
				if t.Failed() {
					t.Logf("dovecot log:\n%s", d.readLog())
				}
			})
			return d
		}
		if !exited {
			stopDaemon(t, "dovecot", cmd.Process.Pid, nil)
			<-done
		}
		logs := append(out.bytes(), d.readLog()...)
		if !bytes.Contains(logs, []byte("in use")) || attempt == 3 {
			t.Fatalf("dovecot: %v\n%s", err, logs)
		}
		// Someone took the port meanwhile: another one.
	}
}

func (d *dovecotInstance) readLog() []byte {
	data, _ := os.ReadFile(d.log)
	return data
}

// waitGreeting waits for a greeting that starts with prefix on port, unless
// the daemon ends first (done): then exited is true.
func waitGreeting(port int, prefix string, done <-chan error) (exited bool, err error) {
	deadline := time.Now().Add(mailStackWait)
	for {
		select {
		case err := <-done:
			return true, fmt.Errorf("dovecot exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, len(prefix))
			_, err = io.ReadFull(c, buf)
			c.Close()
			if err == nil && string(buf) == prefix {
				return false, nil
			}
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("no greeting on port %d within %v: %v", port, mailStackWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// imap runs the IMAP client with an action ("fetch", or "seen N").
func (d *dovecotInstance) imap(t *testing.T, action ...string) []imapMessage {
	t.Helper()
	python := requirePeer(t, "python3", "python3")
	args := append([]string{"-c", imapScript, strconv.Itoa(d.port), "alice", "secret"}, action...)
	out, err := mailToolErr(t, nil, python, args...)
	if err != nil {
		t.Fatalf("imaplib %s: %v\n%s", action, err, out)
	}
	var msgs []imapMessage
	if action[0] == "fetch" {
		if err := json.Unmarshal(out, &msgs); err != nil {
			t.Fatalf("imaplib fetch: %v in %q", err, out)
		}
	}
	return msgs
}

// startSmtpdAs starts the smtpd command as a child process that runs as
// owner, storing under root, with its data directory in dir.
func startSmtpdAs(t *testing.T, owner mailUser, dir, root string) *smtpdProcess {
	t.Helper()
	bin, err := exec.LookPath("smtpd") // the test binary, put on $PATH by TestMain
	if err != nil {
		t.Fatal(err)
	}
	if owner.switched {
		// $PATH's copy sits in a directory private to root: link it
		// where the mail user can run it.
		link := filepath.Join(dir, "smtpd")
		if err := os.Link(bin, link); err != nil {
			t.Fatalf("cannot give the mail user the smtpd binary: %v", err)
		}
		bin = link
	}
	data := filepath.Join(dir, "data")
	for _, d := range []string{data, root} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, owner.uid, owner.gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-l", "127.0.0.1", "-p", "0", "-M", "-1", "-hostname", "smtpd.test", "-d", data, "-maildir", root)
	cmd.Args[0] = "smtpd" // what makes the test binary act as smtpd (TestMain)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if owner.switched {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(owner.uid), Gid: uint32(owner.gid)}}
	}
	p, err := startSmtpdCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(syscall.SIGTERM, mailStackWait); err != nil {
			t.Errorf("smtpd: %v\n%s", err, p.stderr.bytes())
		}
	})
	return p
}

// TestDovecotServesMaildir has smtpd, running as the mail user, store
// messages that a Dovecot serves over IMAP. imaplib fetches each whole:
// byte for byte what was sent with smtpd's Return-Path and Received fields
// on top (Dovecot serves the LF-ended files with CRLF). A flag set over IMAP
// makes Dovecot move the file to cur/ under its Maildir name with ":2,S",
// and smtpd goes on delivering to new/ alongside.
func TestDovecotServesMaildir(t *testing.T) {
	t.Parallel()
	owner := mailOwner(t)
	dir := t.TempDir()
	openUp(t, dir)
	root := filepath.Join(dir, "mail")
	dc := startIMAP(t, root, owner)
	sd := startSmtpdAs(t, owner, dir, root)
	box := filepath.Join(root, "alice")

	send := func(tool string) []byte {
		t.Helper()
		wire := interopMessage(tool, interopTo)
		if err := smtp.SendMail(sd.addr, nil, interopFrom, []string{interopTo}, wire); err != nil {
			t.Fatal(err)
		}
		return wire
	}
	sent := [][]byte{send("dovecot-1"), send("dovecot-2")}

	// Both fetched whole; EXAMINE leaves them in new/.
	fetched := dc.imap(t, "fetch")
	checkServed(t, box, fetched, sent)
	if names := dirNames(t, filepath.Join(box, "new")); len(names) != 2 {
		t.Fatalf("new/ holds %q, want the 2 messages", names)
	}

	// \Seen on the first: Dovecot moves its file to cur/ with the flag
	// in its name; the unique part of the name is smtpd's.
	firstName := storedNameOf(t, box, sent[0])
	dc.imap(t, "seen", "1")
	if _, err := os.Stat(filepath.Join(box, "cur", firstName+":2,S")); err != nil {
		t.Errorf("after \\Seen, %s is not in cur/ as %s: %v (cur/ holds %q)", firstName, firstName+":2,S", err, dirNames(t, filepath.Join(box, "cur")))
	}

	// smtpd delivers the third to new/, next to Dovecot's files.
	sent = append(sent, send("dovecot-3"))
	thirdName := storedNameOf(t, box, sent[2])
	if _, err := os.Stat(filepath.Join(box, "new", thirdName)); err != nil {
		t.Errorf("the third message is not in new/: %v", err)
	}
	fetched = dc.imap(t, "fetch")
	checkServed(t, box, fetched, sent)
	if len(fetched) == 3 && !slices.Contains(fetched[0].Flags, `\Seen`) {
		t.Errorf("first message's flags = %q, want \\Seen", fetched[0].Flags)
	}
}

// checkServed checks that IMAP served the messages sent, in order, each
// as smtpd stored it (its trace fields, then the message as sent) with
// CRLF line endings.
func checkServed(t *testing.T, box string, fetched []imapMessage, sent [][]byte) {
	t.Helper()
	if len(fetched) != len(sent) {
		t.Fatalf("IMAP lists %d messages, want %d", len(fetched), len(sent))
	}
	for i, m := range fetched {
		stored, err := os.ReadFile(storedPathOf(t, box, sent[i]))
		if err != nil {
			t.Fatal(err)
		}
		returnPath, received, rest := splitTraceFields(t, stored)
		if !bytes.Equal(rest, storedForm(sent[i])) {
			t.Errorf("message %d: stored file is not the trace fields and the message as sent", i+1)
		}
		want := []byte(returnPath + "\r\n" + strings.ReplaceAll(received, "\n", "\r\n") + "\r\n" + string(sent[i]))
		if !bytes.Equal(m.Data, want) {
			t.Errorf("message %d over IMAP differs from what smtpd stored\n got: %q\nwant: %q", i+1, m.Data, want)
		}
	}
}

// storedPathOf finds the file, in new/ or cur/ of box, holding the message
// whose Message-ID field wire has.
func storedPathOf(t *testing.T, box string, wire []byte) string {
	t.Helper()
	id := wire[bytes.Index(wire, []byte("Message-ID: ")):]
	id = id[:bytes.IndexByte(id, '\r')]
	for _, sub := range []string{"new", "cur"} {
		for _, name := range dirNames(t, filepath.Join(box, sub)) {
			path := filepath.Join(box, sub, name)
			data, err := os.ReadFile(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) { // Dovecot may be renaming it
				t.Fatal(err)
			}
			if bytes.Contains(data, id) {
				return path
			}
		}
	}
	t.Fatalf("no file in %s holds %s", box, id)
	return ""
}

// storedNameOf returns the Maildir name smtpd gave the message, without
// any ":2,…" info Dovecot added.
func storedNameOf(t *testing.T, box string, wire []byte) string {
	t.Helper()
	name, _, _ := strings.Cut(filepath.Base(storedPathOf(t, box, wire)), ":")
	return name
}

// TestDovecotLMTPProxySendsChunks puts Dovecot's LMTP proxy, whose client
// sends BDAT when offered CHUNKING, in front of smtpd's LMTP: go-smtp's
// LMTP client hands Dovecot a 1 MiB message for alice, bob and carol, and
// Dovecot passes it on to smtpd in chunks (of 128 KiB). It is stored whole for
// alice and carol; bob's full mailbox, refused by smtpd after the last
// chunk, comes back through Dovecot to the client for bob alone.
func TestDovecotLMTPProxySendsChunks(t *testing.T) {
	t.Parallel()
	ts := lmtpServer(t, lmtpFullMailbox)
	dc := startLMTPProxy(t, ts.Addr)
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(dc.port)))
	if err != nil {
		t.Fatal(err)
	}
	// Text, as DATA to Dovecot wants it: no bare CR or LF, no NUL.
	msg := bytes.Clone(interopMessage("dovecot-lmtp", "alice@example.org", "bob@example.org", "carol@example.org"))
	for i := 0; len(msg) < 1<<20; i++ {
		msg = fmt.Appendf(msg, "line %d: Olá, ça va?\r\n", i)
	}
	lmtpWithGoSMTP(t, conn, msg)

	msgs, err := ts.WaitMessages(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if !slices.Equal(m.To, []string{"alice@example.org", "carol@example.org"}) {
		t.Errorf("stored for %q, want alice and carol", m.To)
	}
	if !bytes.HasSuffix(m.Data, msg) || !bytes.HasPrefix(m.Data, []byte("Received: ")) {
		t.Errorf("stored data (%d octets) is not Dovecot's Received field and the %d octets sent", len(m.Data), len(msg))
	}
	var chunkCmds []string
	for _, l := range m.Transcript() {
		if l.Kind == smtpd.KindClient && strings.HasPrefix(l.Text, "BDAT ") {
			chunkCmds = append(chunkCmds, l.Text)
		}
		if l.Kind == smtpd.KindClient && l.Text == "DATA" {
			t.Errorf("Dovecot sent DATA, though smtpd offers CHUNKING")
		}
	}
	t.Logf("Dovecot sent the message in %d chunks: %q", len(chunkCmds), chunkCmds)
	if len(chunkCmds) < 2 || !strings.HasSuffix(chunkCmds[len(chunkCmds)-1], " LAST") {
		t.Errorf("Dovecot's chunks: %q, want several, the last one LAST", chunkCmds)
	}
}
