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
	"path"
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
// local part a single safe path element, and every file operation goes
// through an os.Root, which refuses any path that leaves it.
type maildir struct {
	root *os.Root
	dir  string // absolute path of the root, for Message.Paths
	host string // the hostname, escaped for unique file names
	pid  int
	seq  atomic.Uint64 // deliveries by this process, for unique names

	mu    sync.Mutex
	ready map[string]bool // mailboxes known to exist, durably
}

// maxReadyCache bounds the set of mailboxes remembered as existing.
const maxReadyCache = 4096

func openMaildir(dir, hostname string) (*maildir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	// The Maildir specification escapes '/' and ':' in the host part of
	// unique names.
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(hostname)
	return &maildir{root: root, dir: abs, host: host, pid: os.Getpid(), ready: make(map[string]bool)}, nil
}

func (md *maildir) close() error { return md.root.Close() }

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

// prepare makes sure the mailbox's tmp/, new/ and cur/ exist. When it creates
// any of them it fsyncs the directories above, so that a message renamed
// into new/ cannot vanish with its mailbox after a crash.
func (md *maildir) prepare(box string) error {
	md.mu.Lock()
	ok := md.ready[box]
	md.mu.Unlock()
	if ok {
		return nil
	}
	created := false
	for _, dir := range []string{box, box + "/tmp", box + "/new", box + "/cur"} {
		err := md.root.Mkdir(dir, 0o700)
		if err == nil {
			created = true
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if created {
		if err := md.syncDir("."); err != nil {
			return err
		}
		if err := md.syncDir(box); err != nil {
			return err
		}
	}
	md.mu.Lock()
	if len(md.ready) >= maxReadyCache {
		clear(md.ready)
	}
	md.ready[box] = true
	md.mu.Unlock()
	return nil
}

// forget drops boxes from the mailboxes known to exist.
func (md *maildir) forget(boxes []string) {
	md.mu.Lock()
	defer md.mu.Unlock()
	for _, box := range boxes {
		delete(md.ready, box)
	}
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
	boxes []string // distinct mailbox names
	name  string   // the unique file name, the same in every mailbox
	file  *os.File
	bw    *bufio.Writer
}

// writeBufferSize is the size of the buffer between a message and its file.
const writeBufferSize = 32 << 10

var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

// create starts a delivery to the given mailboxes. What is written to it is
// stored as it is: the caller turns the wire form into the stored form
// (storedWriter).
func (md *maildir) create(boxes []string) (*delivery, error) {
	for _, box := range boxes {
		if err := md.prepare(box); err != nil {
			return nil, fmt.Errorf("maildir: mailbox %q: %w", box, err)
		}
	}
	d := &delivery{md: md, boxes: boxes}
	for retried := false; ; {
		d.name = md.uniqueName(time.Now())
		f, err := md.root.OpenFile(d.tmpPath(boxes[0]), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // a clash with another process on the same host and pid
		}
		if errors.Is(err, fs.ErrNotExist) && !retried {
			// Someone removed the mailbox since it was prepared:
			// forget it and make it again, once.
			retried = true
			md.forget(boxes)
			for _, box := range boxes {
				if err := md.prepare(box); err != nil {
					return nil, fmt.Errorf("maildir: mailbox %q: %w", box, err)
				}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("maildir: create in %q: %w", boxes[0], err)
		}
		d.file = f
		break
	}
	d.bw = writeBuffers.Get().(*bufio.Writer)
	d.bw.Reset(d.file)
	return d, nil
}

func (d *delivery) tmpPath(box string) string { return path.Join(box, "tmp", d.name) }
func (d *delivery) newPath(box string) string { return path.Join(box, "new", d.name) }

// Write takes the next part of the message in its stored form.
func (d *delivery) Write(p []byte) (int, error) { return d.bw.Write(p) }

// commit makes the message durable in every mailbox and returns the paths of
// the stored files. The file is fsynced in tmp/, linked into the other
// mailboxes' tmp/, renamed into each new/, and each new/ is fsynced: only
// then may the server answer 250. On any failure nothing is left in new/
// (nor in tmp/) and an error is returned.
func (d *delivery) commit() ([]string, error) {
	if err := d.finishFile(); err != nil {
		d.removeTmp(d.boxes)
		return nil, fmt.Errorf("maildir: write: %w", err)
	}
	for i, box := range d.boxes[1:] {
		if err := d.copyTo(box); err != nil {
			d.removeTmp(d.boxes[:i+2])
			return nil, fmt.Errorf("maildir: copy to %q: %w", box, err)
		}
	}
	for i, box := range d.boxes {
		if err := d.md.root.Rename(d.tmpPath(box), d.newPath(box)); err != nil {
			d.removeNew(d.boxes[:i])
			d.removeTmp(d.boxes[i:])
			return nil, fmt.Errorf("maildir: move into %q: %w", box+"/new", err)
		}
	}
	for _, box := range d.boxes {
		if err := d.md.syncDir(box + "/new"); err != nil {
			d.removeNew(d.boxes)
			return nil, fmt.Errorf("maildir: sync %q: %w", box+"/new", err)
		}
	}
	paths := make([]string, len(d.boxes))
	for i, box := range d.boxes {
		paths[i] = filepath.Join(d.md.dir, box, "new", d.name)
	}
	return paths, nil
}

// finishFile writes what is still buffered, fsyncs and closes the file.
func (d *delivery) finishFile() error {
	err := d.bw.Flush()
	d.releaseBuffer()
	if err == nil {
		err = d.file.Sync()
	}
	if cerr := d.file.Close(); err == nil {
		err = cerr
	}
	return err
}

func (d *delivery) releaseBuffer() {
	if d.bw != nil {
		d.bw.Reset(nil)
		writeBuffers.Put(d.bw)
		d.bw = nil
	}
}

// copyTo puts the message into box's tmp/: a hard link, as Dovecot does for
// several recipients, or a copy where links are not possible.
func (d *delivery) copyTo(box string) error {
	src, dst := d.tmpPath(d.boxes[0]), d.tmpPath(box)
	if d.md.root.Link(src, dst) == nil {
		return nil
	}
	in, err := d.md.root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := d.md.root.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
	path string
	file *os.File
	bw   *bufio.Writer
}

// newSpool creates the delivery's spool file.
func (d *delivery) newSpool() (*spool, error) {
	path := d.tmpPath(d.boxes[0]) + ",filter"
	f, err := d.md.root.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("maildir: spool: %w", err)
	}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(f)
	return &spool{md: d.md, path: path, file: f, bw: bw}, nil
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
	sp.md.root.Remove(sp.path)
}

// abort gives up a delivery that will not be committed.
func (d *delivery) abort() {
	d.releaseBuffer()
	d.file.Close()
	d.removeTmp(d.boxes[:1])
}

func (d *delivery) removeTmp(boxes []string) {
	for _, box := range boxes {
		d.md.root.Remove(d.tmpPath(box))
	}
}

func (d *delivery) removeNew(boxes []string) {
	for _, box := range boxes {
		d.md.root.Remove(d.newPath(box))
	}
}
