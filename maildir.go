package smtpd

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// maildir delivers messages into a tree of Maildirs, one per recipient
// mailbox: <root>/<mailbox>/{tmp,new,cur}.
//
// Two guards keep a hostile address inside the root: mailboxName makes every
// local part a single safe path element, and every directory is opened
// through an os.Root, which refuses any path that leaves it.
type maildir struct {
	dir  string // absolute path of the root, for Message.Paths
	host string // the hostname, escaped for unique file names
	pid  int
	seq  atomic.Uint64 // deliveries by this process, for unique names

	mu sync.Mutex
	// root is opened, and its directory created, at the first delivery:
	// a server that receives nothing (most test servers) touches nothing.
	root  *os.Root
	boxes map[string]*mailbox // open mailboxes, by name

	group groupCommit // batches the commits of concurrent sessions
}

// maxOpenMailboxes bounds the mailboxes kept open while no delivery uses
// them; each holds two file descriptors.
const maxOpenMailboxes = 256

func newMaildir(dir, hostname string) (*maildir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The Maildir specification escapes '/' and ':' in the host part of
	// unique names.
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(hostname)
	return &maildir{dir: abs, host: host, pid: os.Getpid(), boxes: make(map[string]*mailbox)}, nil
}

// openRoot creates the root directory if needed and opens it, once; md.mu
// is held.
func (md *maildir) openRoot() error {
	if md.root != nil {
		return nil
	}
	if err := os.MkdirAll(md.dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(md.dir)
	if err != nil {
		return err
	}
	md.root = root
	return nil
}

func (md *maildir) close() error {
	md.mu.Lock()
	defer md.mu.Unlock()
	for name, mb := range md.boxes {
		delete(md.boxes, name)
		mb.closeDirs()
	}
	if md.root == nil {
		return nil
	}
	return md.root.Close()
}

// mailboxName maps a recipient's local part to its mailbox directory name:
// lower-cased, with every character that could be unsafe or invisible in a
// file name percent-encoded (as the bytes of its UTF-8 form), so that
// distinct local parts never share a mailbox by accident. A name is never
// empty, ".", "..", never starts with a dot, never holds a separator, NUL,
// control or format character; an overlong one is cut and given a hash of
// the whole, to stay well under NAME_MAX.
func mailboxName(local string) string {
	var b strings.Builder
	if utf8.ValidString(local) {
		for i, r := range strings.ToLower(local) {
			if safeInMailboxName(r, i) {
				b.WriteRune(r)
			} else {
				percentEncode(&b, string(r))
			}
		}
	} else {
		// Not text: lower-case ASCII only, and encode every other
		// byte, so that no two inputs meet in U+FFFD.
		for i := 0; i < len(local); i++ {
			c := local[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c < utf8.RuneSelf && safeInMailboxName(rune(c), i) {
				b.WriteByte(c)
			} else {
				percentEncode(&b, local[i:i+1])
			}
		}
	}
	name := b.String()
	if name == "" {
		// Encoding never makes "%" followed by a non-hex letter, so
		// this cannot be any other local part's name.
		return "%empty"
	}
	const maxName, keep = 128, 96
	if len(name) > maxName {
		sum := sha256.Sum256([]byte(name))
		cut := keep
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + "~" + hex.EncodeToString(sum[:8])
	}
	return name
}

// safeInMailboxName reports whether r, at byte offset i of the name, may
// stand as itself: letters, digits, the safe atext punctuation, a dot that
// does not start the name, and visible non-ASCII characters.
func safeInMailboxName(r rune, i int) bool {
	switch {
	case r < utf8.RuneSelf:
		c := byte(r)
		// '~' is encoded: it marks the hash of a shortened name.
		return isAlnum(c) || strings.IndexByte("!#$&'*+-=?^_`{|}", c) >= 0 || c == '.' && i > 0
	case unicode.IsSpace(r):
		return false
	}
	return unicode.IsGraphic(r) && !unicode.Is(unicode.Cf, r)
}

func percentEncode(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(b, "%%%02x", s[i])
	}
}

// uniqueName returns a file name no other delivery will use, in the form
// Dovecot and the Maildir specification describe:
// <seconds>.M<microseconds>P<pid>Q<sequence>R<random>.<host>.
func (md *maildir) uniqueName(now time.Time) string {
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = strconv.AppendInt(b, int64(md.pid), 10)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, md.seq.Add(1), 10)
	b = append(b, 'R')
	b = strconv.AppendUint(b, uint64(rand.Uint32()), 16)
	b = append(b, '.')
	b = append(b, md.host...)
	return string(b)
}

// mailbox is one Maildir below the root, with its tmp/ and new/ held open,
// so that a delivery works relative to them (see maildir_unix.go): one
// openat to create its file, one renameat to move it into new/, one fsync of
// new/, instead of a walk down the tree for each step. The directories were
// opened through the os.Root, so they are inside it, and the only names used
// in them are the server's own unique names.
type mailbox struct {
	name     string
	root     *os.Root // for systems without *at system calls
	tmp, new *os.File
	users    int  // deliveries using it; guarded by maildir.mu
	dropped  bool // out of the cache: closed when its last user is done
}

// acquire returns the mailbox box, creating its tmp/, new/ and cur/ when
// they do not exist. The caller releases it.
func (md *maildir) acquire(box string) (*mailbox, error) {
	md.mu.Lock()
	if mb := md.boxes[box]; mb != nil {
		mb.users++
		md.mu.Unlock()
		return mb, nil
	}
	err := md.openRoot()
	md.mu.Unlock()
	if err != nil {
		return nil, err
	}
	mb, err := md.openMailbox(box)
	if err != nil {
		return nil, err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if other := md.boxes[box]; other != nil { // another session was quicker
		mb.closeDirs()
		other.users++
		return other, nil
	}
	if len(md.boxes) >= maxOpenMailboxes {
		for name, unused := range md.boxes {
			if unused.users == 0 {
				delete(md.boxes, name)
				unused.closeDirs()
			}
		}
	}
	mb.users = 1
	md.boxes[box] = mb
	return mb, nil
}

// openMailbox makes sure the mailbox's tmp/, new/ and cur/ exist and opens
// tmp/ and new/. When it creates a directory it fsyncs the ones above, so
// that a message renamed into new/ cannot vanish with its mailbox after a
// crash.
func (md *maildir) openMailbox(box string) (*mailbox, error) {
	created := false
	for _, dir := range []string{box, box + "/tmp", box + "/new", box + "/cur"} {
		err := md.root.Mkdir(dir, 0o700)
		if err == nil {
			created = true
			if dir == box {
				md.spreadSubdirs(box)
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	if created {
		if err := md.syncDir("."); err != nil {
			return nil, err
		}
		if err := md.syncDir(box); err != nil {
			return nil, err
		}
	}
	mb := &mailbox{name: box, root: md.root}
	var err error
	if mb.tmp, err = md.root.Open(box + "/tmp"); err != nil {
		return nil, err
	}
	if mb.new, err = md.root.Open(box + "/new"); err != nil {
		mb.tmp.Close()
		return nil, err
	}
	return mb, nil
}

// hold takes one more use of mb, which the holder releases.
func (md *maildir) hold(mb *mailbox) {
	md.mu.Lock()
	mb.users++
	md.mu.Unlock()
}

// release says a delivery is done with mb.
func (md *maildir) release(mb *mailbox) {
	md.mu.Lock()
	defer md.mu.Unlock()
	mb.users--
	if mb.users == 0 && mb.dropped {
		mb.closeDirs()
	}
}

// forget takes mb out of the cache (its directory was removed), so that the
// next delivery opens it anew.
func (md *maildir) forget(mb *mailbox) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.boxes[mb.name] == mb {
		delete(md.boxes, mb.name)
	}
	mb.dropped = true
	if mb.users == 0 {
		mb.closeDirs()
	}
}

func (mb *mailbox) closeDirs() {
	mb.tmp.Close()
	mb.new.Close()
}

// spreadSubdirs asks the file system to place the new mailbox's tmp/, new/
// and cur/ away from other directories, as it does for home directories
// (see topdir_linux.go). It is a hint: failure changes nothing.
func (md *maildir) spreadSubdirs(box string) {
	d, err := md.root.Open(box)
	if err != nil {
		return
	}
	markTopDir(d)
	d.Close()
}

func (md *maildir) syncDir(dir string) error {
	d, err := md.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// delivery is one message on its way into one or more mailboxes. It is
// written once, into tmp/ of the first mailbox; commit makes it durable and
// visible in every mailbox's new/, or in none.
type delivery struct {
	md    *maildir
	boxes []*mailbox // distinct mailboxes, held until the delivery ends
	name  string     // the unique file name, the same in every mailbox
	file  *os.File
	bw    *bufio.Writer

	// For the group commit: the committing session waits on wake (true:
	// lead the next batch), and err says how the commit ended.
	wake chan bool
	err  error
}

// writeBufferSize is the size of the buffer between a message and its file.
const writeBufferSize = 32 << 10

var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

// create starts a delivery to the given mailboxes. What is written to it is
// stored as it is: the caller turns the wire form into the stored form
// (storedWriter).
func (md *maildir) create(boxes []string) (*delivery, error) {
	d := &delivery{md: md}
	if err := d.acquire(boxes); err != nil {
		return nil, err
	}
	for retried := false; ; {
		d.name = md.uniqueName(time.Now())
		f, err := d.boxes[0].createTmp(d.name, os.O_WRONLY)
		if errors.Is(err, fs.ErrExist) {
			continue // a clash with another process on the same host and pid
		}
		if errors.Is(err, fs.ErrNotExist) && !retried {
			// Someone removed the mailbox since it was opened: open
			// it anew, once.
			retried = true
			for _, mb := range d.boxes {
				md.forget(mb)
			}
			d.release()
			if err := d.acquire(boxes); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			d.release()
			return nil, fmt.Errorf("maildir: create in %q: %w", boxes[0], err)
		}
		d.file = f
		break
	}
	d.bw = writeBuffers.Get().(*bufio.Writer)
	d.bw.Reset(d.file)
	return d, nil
}

// acquire opens the delivery's mailboxes, or none of them.
func (d *delivery) acquire(boxes []string) error {
	for _, name := range boxes {
		mb, err := d.md.acquire(name)
		if err != nil {
			d.release()
			return fmt.Errorf("maildir: mailbox %q: %w", name, err)
		}
		d.boxes = append(d.boxes, mb)
	}
	return nil
}

// release gives the delivery's mailboxes back.
func (d *delivery) release() {
	for _, mb := range d.boxes {
		d.md.release(mb)
	}
	d.boxes = d.boxes[:0]
}

// Write takes the next part of the message in its stored form.
func (d *delivery) Write(p []byte) (int, error) { return d.bw.Write(p) }

// commit makes the message durable in every mailbox and returns the paths of
// the stored files. The file is written out and linked into the other
// mailboxes' tmp/; then, in a batch with the deliveries of other sessions
// (commit.go), the data is flushed to disk, the file renamed into each new/,
// and the directories flushed: only then may the server answer 250. On any
// failure nothing is left in new/ (nor in tmp/) and an error is returned.
func (d *delivery) commit() ([]string, error) {
	defer d.release()
	// Closed however the commit ends. Once committed, the data was
	// flushed before the rename: an error from close cannot lose any.
	defer d.file.Close()
	err := d.bw.Flush()
	d.releaseBuffer()
	if err != nil {
		d.removeTmp(d.boxes[:1])
		return nil, fmt.Errorf("maildir: write: %w", err)
	}
	for i, mb := range d.boxes[1:] {
		if err := d.copyTo(mb); err != nil {
			d.removeTmp(d.boxes[:i+2])
			return nil, fmt.Errorf("maildir: copy to %q: %w", mb.name, err)
		}
	}
	if err := d.md.group.commit(d); err != nil {
		return nil, err
	}
	paths := make([]string, len(d.boxes))
	for i, mb := range d.boxes {
		paths[i] = filepath.Join(d.md.dir, mb.name, "new", d.name)
	}
	return paths, nil
}

func (d *delivery) releaseBuffer() {
	if d.bw != nil {
		d.bw.Reset(nil)
		writeBuffers.Put(d.bw)
		d.bw = nil
	}
}

// copyTo puts the message into mb's tmp/: a hard link, as Dovecot does for
// several recipients, or a copy where links are not possible.
func (d *delivery) copyTo(mb *mailbox) error {
	first := d.boxes[0]
	if linkTmp(first, mb, d.name) == nil {
		return nil
	}
	in, err := first.openTmp(d.name)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := mb.createTmp(d.name, os.O_WRONLY)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// spool is a scratch file beside a delivery, in tmp/ of its first mailbox,
// that holds a message for a content filter to read.
type spool struct {
	md   *maildir
	box  *mailbox // held until the spool is removed
	name string
	file *os.File
	bw   *bufio.Writer
}

// newSpool creates the delivery's spool file; it lives as long as the
// delivery holds the mailbox.
func (d *delivery) newSpool() (*spool, error) {
	name := d.name + ",filter"
	f, err := d.boxes[0].createTmp(name, os.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("maildir: spool: %w", err)
	}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(f)
	d.md.hold(d.boxes[0])
	return &spool{md: d.md, box: d.boxes[0], name: name, file: f, bw: bw}, nil
}

func (sp *spool) Write(p []byte) (int, error) { return sp.bw.Write(p) }

// reader returns the spooled message from its start.
func (sp *spool) reader() (*os.File, error) {
	err := sp.bw.Flush()
	sp.releaseBuffer()
	if err != nil {
		return nil, err
	}
	if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return sp.file, nil
}

func (sp *spool) releaseBuffer() {
	if sp.bw != nil {
		sp.bw.Reset(nil)
		writeBuffers.Put(sp.bw)
		sp.bw = nil
	}
}

// remove deletes the spool file.
func (sp *spool) remove() {
	sp.releaseBuffer()
	sp.file.Close()
	sp.box.removeTmp(sp.name)
	sp.md.release(sp.box)
}

// abort gives up a delivery that will not be committed.
func (d *delivery) abort() {
	d.releaseBuffer()
	d.file.Close()
	d.removeTmp(d.boxes[:1])
	d.release()
}

func (d *delivery) removeTmp(boxes []*mailbox) {
	for _, mb := range boxes {
		mb.removeTmp(d.name)
	}
}

func (d *delivery) removeNew(boxes []*mailbox) {
	for _, mb := range boxes {
		mb.removeNew(d.name)
	}
}
