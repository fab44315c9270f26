package smtpd

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tpe-protos/smtpd/internal/openfiles"
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

	// noSync skips every flush to disk (Config.NoSync): a message still
	// appears in new/ whole, but a crash of the machine may lose it.
	noSync bool
	// log receives what no client can be told: cleanups that failed.
	log *slog.Logger
	// noUnnamed is set once the file system refused an unnamed file
	// (see maildir_linux.go); deliveries then name theirs in tmp/.
	noUnnamed atomic.Bool

	mu sync.Mutex
	// root is opened, and its directory created, at the first delivery:
	// a server that receives nothing (most test servers) touches nothing.
	root    *os.Root
	boxes   map[string]*mailbox // the cache of open mailboxes, by name
	maxOpen int                 // its bound: maxOpenMailboxes but in tests
	room    sync.Cond           // on mu: a mailbox of the cache fell unused

	group groupCommit // batches the commits of concurrent sessions
}

// maxOpenMailboxes bounds the mailboxes open at once, in use or not; each
// holds two file descriptors. Deliveries take them one at a time, for one
// step each (see maildir.with), so the bound holds however many messages
// are in flight and however many recipients they have.
const maxOpenMailboxes = openfiles.Mailboxes

// copying bounds the copies made at once where hard links are not
// possible (copyInto): each holds a file besides its delivery's.
var copying = make(chan struct{}, openfiles.Copies)

func newMaildir(dir, hostname string) (*maildir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// The Maildir specification escapes '/' and ':' in the host part of
	// unique names.
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(hostname)
	md := &maildir{dir: abs, host: host, pid: os.Getpid(), log: slog.Default(),
		boxes: make(map[string]*mailbox), maxOpen: maxOpenMailboxes}
	md.room.L = &md.mu
	return md, nil
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
// openat to create its file, one linkat or renameat to put it into new/, one
// fsync of new/, instead of a walk down the tree for each step. The
// directories were opened through the os.Root, so they are inside it, and
// the only names used in them are the server's own unique names.
type mailbox struct {
	name     string
	root     *os.Root // for systems without *at system calls
	tmp, new *os.File
	dev      uint64 // the file system of new/, where syncfs is at hand

	ready chan struct{} // closed once the mailbox is open, or could not be
	err   error         // why it could not be; set before ready is closed

	users   int  // steps using it now; guarded by maildir.mu
	dropped bool // out of the cache: closed when its last user is done
	closed  bool
}

// with runs op on the mailbox box, opened (and made, if it does not exist)
// for the time of op. Every step of a delivery goes through it, one mailbox
// at a time, so that the directories open at once stay within the cache
// (maxOpenMailboxes) whatever the messages in flight. If op finds a
// directory gone from a mailbox opened earlier, as when someone removed
// the mailbox meanwhile, the mailbox is opened anew and op runs once more.
func (md *maildir) with(box string, op func(*mailbox) error) error {
	for retried := false; ; retried = true {
		mb, fresh, err := md.acquire(box)
		if err != nil {
			return fmt.Errorf("maildir: mailbox %q: %w", box, err)
		}
		err = op(mb)
		md.release(mb)
		if fresh || retried || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		md.forget(mb)
	}
}

// acquire returns the mailbox box, and whether this call opened it. When
// the cache is full of mailboxes in use, it waits until one is released:
// no step waits for anything else while it holds a mailbox, so the wait
// ends. The caller releases the mailbox.
func (md *maildir) acquire(box string) (mb *mailbox, fresh bool, err error) {
	md.mu.Lock()
	for md.boxes[box] == nil && !md.makeRoom() {
		md.room.Wait()
	}
	if mb = md.boxes[box]; mb != nil {
		mb.users++
		md.mu.Unlock()
		<-mb.ready
		if mb.err != nil {
			md.release(mb)
			return nil, false, mb.err
		}
		return mb, false, nil
	}
	if err := md.openRoot(); err != nil {
		md.mu.Unlock()
		return nil, false, err
	}
	// The mailbox takes its place in the cache now, so that the
	// sessions that want it meanwhile wait for this one opening.
	mb = &mailbox{name: box, root: md.root, users: 1, ready: make(chan struct{})}
	md.boxes[box] = mb
	md.mu.Unlock()
	mb.err = md.openMailbox(mb)
	close(mb.ready)
	if mb.err != nil {
		md.forget(mb)
		md.release(mb)
		return nil, false, mb.err
	}
	return mb, true, nil
}

// makeRoom reports whether the cache has room for one more mailbox,
// closing an unused one if it must; md.mu is held.
func (md *maildir) makeRoom() bool {
	if len(md.boxes) < md.maxOpen {
		return true
	}
	for name, mb := range md.boxes {
		if mb.users == 0 {
			delete(md.boxes, name)
			mb.closeDirs()
			return true
		}
	}
	return false
}

// release says a step is done with mb.
func (md *maildir) release(mb *mailbox) {
	md.mu.Lock()
	defer md.mu.Unlock()
	mb.users--
	if mb.users == 0 {
		if mb.dropped {
			mb.closeDirs()
		}
		md.room.Broadcast()
	}
}

// forget takes mb out of the cache (it could not be opened, or its
// directory was removed), so that the next step opens it anew.
func (md *maildir) forget(mb *mailbox) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.boxes[mb.name] == mb {
		delete(md.boxes, mb.name)
		md.room.Broadcast()
	}
	mb.dropped = true
	if mb.users == 0 {
		mb.closeDirs()
	}
}

// closeDirs closes the mailbox's directories; maildir.mu is held.
func (mb *mailbox) closeDirs() {
	if mb.closed {
		return
	}
	mb.closed = true
	for _, f := range []*os.File{mb.tmp, mb.new} {
		if f != nil {
			f.Close()
		}
	}
}

// openMailbox makes sure the mailbox's tmp/, new/ and cur/ exist and opens
// tmp/ and new/. When it creates a directory it flushes the ones above,
// so that a message put into new/ cannot vanish with its mailbox after a
// crash.
func (md *maildir) openMailbox(mb *mailbox) error {
	box := mb.name
	created := false
	for _, dir := range []string{box, box + "/tmp", box + "/new", box + "/cur"} {
		err := md.root.Mkdir(dir, 0o700)
		if err == nil {
			created = true
			if dir == box {
				md.spreadSubdirs(box)
			}
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if created && !md.noSync {
		if err := md.syncDir("."); err != nil {
			return err
		}
		if err := md.syncDir(box); err != nil {
			return err
		}
	}
	var err error
	if mb.tmp, _, err = md.openDir(box + "/tmp"); err != nil {
		return err
	}
	mb.new, mb.dev, err = md.openDir(box + "/new")
	return err
}

// openDir opens the directory name below the root, and says which file
// system it is on. Anything else by that name, a file left there for one,
// is an error.
func (md *maildir) openDir(name string) (*os.File, uint64, error) {
	d, err := md.root.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := d.Stat()
	if err == nil && !fi.IsDir() {
		err = &fs.PathError{Op: "open", Path: name, Err: syscall.ENOTDIR}
	}
	if err != nil {
		d.Close()
		return nil, 0, err
	}
	return d, deviceOf(fi), nil
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

// delivery is one message on its way into one or more mailboxes. While it
// is received it holds one open file and no directory: the message's file,
// made in tmp/ of the first mailbox. Its commit makes it durable and
// visible in every mailbox's new/, or in none.
type delivery struct {
	md    *maildir
	boxes []string // the distinct mailboxes; the file is in the first
	name  string   // the unique file name, the same in every mailbox
	file  *os.File // open for reading too, for a copy where a link fails
	// unnamed says the file has no name before it is linked into new/
	// (see maildir_linux.go); otherwise it is tmp/name of the first
	// mailbox.
	unnamed bool
	bw      *bufio.Writer

	// For the group commit: the committing session waits on wake (true:
	// lead the next batch), and err says how the commit ended.
	wake chan bool
	err  error
}

// writeBufferSize is the size of the buffer between a message and its file.
const writeBufferSize = 32 << 10

var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}

// create starts a delivery to the given mailboxes, each of which is made
// now if it does not exist, so that a mailbox that cannot be used is an
// error before the client sends its message. What is written to the
// delivery is stored as it is: the caller turns the wire form into the
// stored form (storedWriter).
func (md *maildir) create(boxes []string) (*delivery, error) {
	for _, box := range boxes {
		if err := md.with(box, func(*mailbox) error { return nil }); err != nil {
			return nil, err
		}
	}
	d := &delivery{md: md, boxes: boxes, name: md.uniqueName(time.Now())}
	file, named, err := d.newFile("")
	if err != nil {
		return nil, fmt.Errorf("maildir: create in %q: %w", boxes[0], err)
	}
	d.file, d.unnamed = file, named == ""
	d.bw = writeBuffers.Get().(*bufio.Writer)
	d.bw.Reset(d.file)
	return d, nil
}

// newFile creates a file in tmp/ of the delivery's first mailbox, for
// reading and writing: unnamed where the file system can, else named the
// delivery's name followed by suffix. It returns the name, "" for an
// unnamed file. A clash with another file's name gives the delivery a new
// name.
func (d *delivery) newFile(suffix string) (f *os.File, name string, err error) {
	err = d.md.with(d.boxes[0], func(mb *mailbox) error {
		if !d.md.noUnnamed.Load() {
			if f, err = mb.createUnnamed(); !errors.Is(err, errors.ErrUnsupported) {
				return err
			}
			d.md.noUnnamed.Store(true)
		}
		for {
			name = d.name + suffix
			if f, err = mb.createTmp(name); !errors.Is(err, fs.ErrExist) {
				return err
			}
			// A clash with another process on the same host and pid.
			d.name = d.md.uniqueName(time.Now())
		}
	})
	return f, name, err
}

// Write takes the next part of the message in its stored form.
func (d *delivery) Write(p []byte) (int, error) { return d.bw.Write(p) }

// commit makes the message durable in every mailbox and returns the paths of
// the stored files. In a batch with the deliveries of other sessions
// (commit.go), the data is flushed to disk, the file put into each new/,
// and the directories flushed: only then may the server answer 250. On any
// failure nothing is left in new/ (nor in tmp/) and an error is returned.
// With noSync nothing is flushed and no batch is needed.
func (d *delivery) commit() ([]string, error) {
	// Closed however the commit ends. Once committed, the data was
	// flushed before it appeared in new/: an error from close cannot lose
	// any.
	defer d.file.Close()
	err := d.bw.Flush()
	d.releaseBuffer()
	if err != nil {
		d.takeBack(nil)
		return nil, fmt.Errorf("maildir: write: %w", err)
	}
	if d.md.noSync {
		err = d.publish()
	} else {
		err = d.md.group.commit(d)
	}
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(d.boxes))
	for i, box := range d.boxes {
		paths[i] = filepath.Join(d.md.dir, box, "new", d.name)
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

// publish makes the message appear, whole and at once, in the new/ of each
// mailbox: an unnamed file is linked there; a named one is linked from tmp/
// into the others' new/, then renamed into its own, last. On failure it
// takes back what it did, and returns the error.
func (d *delivery) publish() error {
	order := d.boxes
	if !d.unnamed {
		order = append(slices.Clone(d.boxes[1:]), d.boxes[0])
	}
	for i, box := range order {
		if err := d.publishTo(box); err != nil {
			d.takeBack(order[:i])
			return fmt.Errorf("maildir: put into %q: %w", box+"/new", err)
		}
	}
	return nil
}

// publishTo puts the message into box's new/: a hard link, as Dovecot
// does for several recipients, or a copy where links are not possible.
func (d *delivery) publishTo(box string) error {
	var err error
	switch {
	case d.unnamed:
		err = d.md.with(box, func(mb *mailbox) error { return mb.linkUnnamed(d.file, d.name) })
	case box == d.boxes[0]:
		return d.md.with(box, func(mb *mailbox) error { return mb.moveToNew(d.name) })
	default:
		err = d.md.root.Link(path.Join(d.boxes[0], "tmp", d.name), path.Join(box, "new", d.name))
	}
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	return d.md.with(box, d.copyInto)
}

// copyInto stores a copy of the message in mb's new/, through tmp/. The
// copy is made after the batch's data flush, so it flushes itself.
func (d *delivery) copyInto(mb *mailbox) error {
	copying <- struct{}{}
	defer func() { <-copying }()
	out, err := mb.createTmp(d.name)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.NewSectionReader(d.file, 0, math.MaxInt64))
	if err == nil && !d.md.noSync {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = mb.moveToNew(d.name)
	}
	if err != nil {
		d.removeFrom(mb.name, "tmp", d.name)
	}
	return err
}

// takeBack removes the message from the new/ of the mailboxes it was put
// into and, if it is named, its file from tmp/.
func (d *delivery) takeBack(published []string) {
	for _, box := range published {
		d.removeFrom(box, "new", d.name)
	}
	if !d.unnamed && !slices.Contains(published, d.boxes[0]) {
		d.removeFrom(d.boxes[0], "tmp", d.name)
	}
}

// removeFrom unlinks name from box's sub/ ("tmp" or "new"). No client can
// be told when that fails, so it is logged: a file left in tmp/ is only
// litter (Maildir readers remove old ones), but one left in new/ is a
// message delivered although the client was told it was not, and its retry
// will deliver it again.
func (d *delivery) removeFrom(box, sub, name string) {
	err := d.md.with(box, func(mb *mailbox) error {
		if sub == "new" {
			return mb.removeNew(name)
		}
		return mb.removeTmp(name)
	})
	if err == nil {
		return
	}
	p := filepath.Join(d.md.dir, box, sub, name)
	if sub == "new" {
		d.md.log.Error("smtpd: a message refused with 451 stays in new/: the client's retry will deliver it twice", "path", p, "err", err)
		return
	}
	d.md.log.Warn("smtpd: cannot remove a message file from tmp/", "path", p, "err", err)
}

// spool is a scratch file beside a delivery, in tmp/ of its first mailbox,
// that holds a message for a content filter to read.
type spool struct {
	d    *delivery
	name string // "" for an unnamed file
	file *os.File
	bw   *bufio.Writer
}

// newSpool creates the delivery's spool file.
func (d *delivery) newSpool() (*spool, error) {
	f, name, err := d.newFile(",filter")
	if err != nil {
		return nil, fmt.Errorf("maildir: spool: %w", err)
	}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(f)
	return &spool{d: d, name: name, file: f, bw: bw}, nil
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
	if sp.name != "" {
		sp.d.removeFrom(sp.d.boxes[0], "tmp", sp.name)
	}
}

// abort gives up a delivery that will not be committed.
func (d *delivery) abort() {
	d.releaseBuffer()
	d.file.Close()
	d.takeBack(nil)
}
