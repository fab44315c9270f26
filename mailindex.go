package smtpd

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tpe-protos/smtpd/internal/mimemsg"
)

// The HTTP view lists the Maildir tree itself: there is no database. At
// start an index of every message's header fields is built from the files
// in new/ and cur/ of each mailbox (so messages stored before a restart, and
// those a mail reader has moved to cur/, are listed); then the server adds
// each message it stores, and the view removes those it deletes.
//
// Every file is reached through the Maildir's os.Root. An id is a hash of
// the mailbox and the file's unique name: the view looks it up in the
// index, never uses it as a path, so no id can name a file outside the
// root, or one the index does not hold.

// Bounds of the index (SECURITY.md).
const (
	// maxIndexed is how many messages the index holds: the newest ones.
	// Older messages stay on disk, unlisted.
	maxIndexed = 20000
	// maxTranscripts is how many of the messages received by this
	// process keep their envelope and session transcript; older ones
	// lose them.
	maxTranscripts = 1000
	// Lengths, in bytes, of the header texts an entry keeps.
	maxSummaryText = 200 // from, each recipient, subject
	maxRecipients  = 10  // addresses listed per To and Cc field
)

// messageSummary is a message as the list shows it (and the JSON API: GET
// /api/v1/messages, and the event stream's "message" events).
type messageSummary struct {
	ID      string `json:"id"`
	Mailbox string `json:"mailbox"`
	// From is the From field, decoded (RFC 2047); ReturnPath the
	// envelope sender, from the Return-Path field the server added.
	From       string `json:"from"`
	ReturnPath string `json:"return_path"`
	// To and Cc are the addresses of those fields, decoded.
	To      []string `json:"to"`
	Cc      []string `json:"cc"`
	Subject string   `json:"subject"`
	// Date is the Date field, or when the message was stored if it has
	// none that parses. Stored is when the message was stored: the time
	// in its file name (see storedTime), or the file's modification time.
	Date        time.Time `json:"date"`
	Stored      time.Time `json:"stored"`
	Size        int64     `json:"size"`        // of the stored file
	Attachments int       `json:"attachments"` // how many parts are attachments
}

// indexEntry is one stored file of the index.
type indexEntry struct {
	messageSummary
	base string // the file's unique name, without the ":2,flags" info
	file string // its path below the root: mailbox/new/name or mailbox/cur/name:2,S

	// received is the envelope and transcript, for a message this process
	// received (the newest maxTranscripts of them).
	received *receipt
}

// receipt is what the server knew of a message when it received it: the
// envelope and the session's transcript, not the data (the file has it).
type receipt struct {
	QueueID    string    `json:"queue_id"`
	From       string    `json:"from"` // "" for the null sender
	To         []string  `json:"to"`
	Helo       string    `json:"helo"`
	RemoteAddr string    `json:"remote_addr"`
	TLS        string    `json:"tls,omitempty"` // the TLS version, when it came over TLS
	AuthUser   string    `json:"auth_user,omitempty"`
	Time       time.Time `json:"time"`
	// message gives the session's transcript when it is asked for: it
	// grows past the data to the final reply and QUIT (Message.Transcript).
	message *Message
}

// Transcript returns the session's transcript as far as it has gone.
func (r *receipt) Transcript() []TranscriptLine { return r.message.Transcript() }

func newReceipt(m *Message) *receipt {
	r := &receipt{QueueID: m.ID, From: m.From, To: m.To, Helo: m.Helo, AuthUser: m.AuthUser, Time: m.Time, message: m}
	if m.RemoteAddr != nil {
		r.RemoteAddr = m.RemoteAddr.String()
	}
	if m.TLS != nil {
		r.TLS = tls.VersionName(m.TLS.Version)
	}
	return r
}

// mailIndex is the index of the Maildir tree.
type mailIndex struct {
	root func() (*os.Root, error) // the Maildir's root, opened on first use

	// The bounds: maxIndexed and maxTranscripts, but for tests.
	maxEntries, maxReceipts int

	ready chan struct{} // closed once the first scan is done

	mu          sync.RWMutex
	byID        map[string]*indexEntry
	list        []*indexEntry // oldest first (by stored time, then name)
	transcripts []*indexEntry // entries with received set, oldest first
}

func newMailIndex(root func() (*os.Root, error)) *mailIndex {
	return &mailIndex{root: root, maxEntries: maxIndexed, maxReceipts: maxTranscripts,
		ready: make(chan struct{}), byID: make(map[string]*indexEntry)}
}

// messageID returns the id of a mailbox's message file: the same for the
// file in new/ and once moved to cur/, and across restarts.
func messageID(mailbox, base string) string {
	sum := sha256.Sum256([]byte(mailbox + "/" + base))
	return hex.EncodeToString(sum[:10])
}

// uniqueBase cuts the Maildir info (":2,S") off a file name.
func uniqueBase(name string) string {
	base, _, _ := strings.Cut(name, ":")
	return base
}

// storedTime returns when the file name was made, to the microsecond, for
// names of the form this server, Dovecot and the Maildir specification's
// newer convention use (<seconds>.M<microseconds>P…), or else modTime:
// modification times are only as fine as the kernel's clock tick (4 ms
// here), too coarse to order messages that come in quick succession.
func storedTime(name string, modTime time.Time) time.Time {
	secs, rest, ok := strings.Cut(name, ".M")
	if !ok {
		return modTime
	}
	usecs, _, ok := strings.Cut(rest, "P")
	s, err1 := strconv.ParseInt(secs, 10, 64)
	us, err2 := strconv.ParseInt(usecs, 10, 64)
	if !ok || err1 != nil || err2 != nil || us < 0 || us >= 1e6 {
		return modTime
	}
	return time.Unix(s, us*1000)
}

// storedFile is a message file found by a scan.
type storedFile struct {
	file   string // below the root
	info   fs.FileInfo
	stored time.Time // storedTime
}

// scan indexes the messages of every mailbox, the newest maxEntries of
// them; messages added meanwhile by add stay. It closes ready when done.
func (ix *mailIndex) scan() error {
	defer close(ix.ready)
	root, err := ix.root()
	if err != nil {
		return err
	}
	files, err := listStored(root)
	if err != nil {
		return err
	}
	// The newest first, so that the cut keeps them.
	slices.SortFunc(files, func(a, b storedFile) int {
		return cmp.Or(b.stored.Compare(a.stored), strings.Compare(b.file, a.file))
	})
	files = files[:min(len(files), ix.maxEntries)]
	entries := make([]*indexEntry, 0, len(files))
	for _, f := range files {
		if e := readEntry(root, f.file, f.info); e != nil {
			entries = append(entries, e)
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, e := range entries {
		if ix.byID[e.ID] == nil {
			ix.insert(e)
		}
	}
	return nil
}

// listStored lists the regular files in new/ and cur/ of every mailbox.
func listStored(root *os.Root) ([]storedFile, error) {
	boxes, err := readDirNames(root, ".")
	if err != nil {
		return nil, err
	}
	var files []storedFile
	for _, box := range boxes {
		if strings.HasPrefix(box, ".") {
			continue
		}
		for _, sub := range []string{"new", "cur"} {
			dir := box + "/" + sub
			names, err := readDirNames(root, dir)
			if err != nil {
				continue // not a Maildir, or not readable: not listed
			}
			files = append(files, statFiles(root, dir, names)...)
		}
	}
	return files, nil
}

// statFiles returns the regular files among names in dir, through a root of
// their own (one system call each, rather than a walk from the top).
func statFiles(root *os.Root, dir string, names []string) []storedFile {
	sub, err := root.OpenRoot(dir)
	if err != nil {
		return nil
	}
	defer sub.Close()
	files := make([]storedFile, 0, len(names))
	for _, name := range names {
		info, err := sub.Lstat(name)
		if err == nil && info.Mode().IsRegular() && !strings.HasPrefix(name, ".") {
			files = append(files, storedFile{file: dir + "/" + name, info: info, stored: storedTime(name, info.ModTime())})
		}
	}
	return files
}

// readDirNames lists a directory below the root.
func readDirNames(root *os.Root, dir string) ([]string, error) {
	d, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// readEntry reads the file at file (below the root) into an index entry,
// or returns nil when it cannot be read.
func readEntry(root *os.Root, file string, info fs.FileInfo) *indexEntry {
	raw, err := root.ReadFile(file)
	if err != nil {
		return nil
	}
	box, name := path.Dir(path.Dir(file)), path.Base(file)
	e := &indexEntry{base: uniqueBase(name), file: file}
	e.ID = messageID(box, e.base)
	e.Mailbox = box
	e.Size = int64(len(raw))
	e.Stored = storedTime(name, info.ModTime())
	e.summarize(raw)
	e.To, e.Cc = orEmpty(e.To), orEmpty(e.Cc)
	return e
}

// summarize fills in what the list shows from the message's bytes.
func (e *indexEntry) summarize(raw []byte) {
	e.Date = e.Stored
	msg, err := mimemsg.Parse(raw)
	if err != nil {
		return // not even a header section: listed, with nothing to show
	}
	h := msg.Header
	e.From = clip(decodeAddresses(h.Get("From")))
	e.ReturnPath = clip(strings.Trim(h.Get("Return-Path"), "<> \t"))
	e.To, e.Cc = clipAddresses(h.Get("To")), clipAddresses(h.Get("Cc"))
	e.Subject = clip(msg.Subject())
	if d, err := h.Date(); err == nil {
		e.Date = d
	}
	e.Attachments = len(msg.Attachments())
}

// clipAddresses returns the first maxRecipients addresses of an address
// field, each clipped.
func clipAddresses(field string) []string {
	list := splitAddresses(field)
	kept := make([]string, min(len(list), maxRecipients)) // not a reslice: it would keep them all
	for i := range kept {
		kept[i] = clip(list[i])
	}
	return kept
}

// orEmpty makes a nil list an empty one, which JSON writes as [] rather
// than null.
func orEmpty(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// matches reports whether the sender, a recipient, the mailbox or the
// subject contain query, without regard to case. The texts are searched as
// they are kept, rather than kept a second time in lower case.
func (e *indexEntry) matches(query string) bool {
	for _, list := range [][]string{{e.From, e.ReturnPath, e.Mailbox, e.Subject}, e.To, e.Cc} {
		for _, s := range list {
			if containsFold(s, query) {
				return true
			}
		}
	}
	return false
}

// containsFold reports whether s contains substr under Unicode simple case
// folding, as strings.EqualFold compares (for an ASCII substr, ASCII case
// folding: the common search, ten times faster).
func containsFold(s, substr string) bool {
	if isASCII(substr) {
		return containsFoldASCII(s, substr)
	}
	for i := 0; ; {
		if hasPrefixFold(s[i:], substr) {
			return true
		}
		if i == len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
	}
}

func containsFoldASCII(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		j := 0
		for j < len(substr) && lowerASCII(s[i+j]) == lowerASCII(substr[j]) {
			j++
		}
		if j == len(substr) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// hasPrefixFold reports whether s starts with prefix under case folding.
func hasPrefixFold(s, prefix string) bool {
	for prefix != "" {
		if s == "" {
			return false
		}
		_, n := utf8.DecodeRuneInString(s)
		_, m := utf8.DecodeRuneInString(prefix)
		if !strings.EqualFold(s[:n], prefix[:m]) {
			return false
		}
		s, prefix = s[n:], prefix[m:]
	}
	return true
}

// decodeAddresses returns an address field decoded, as a reader would
// write it, or the field as it is when it does not parse.
func decodeAddresses(v string) string {
	return strings.Join(splitAddresses(v), ", ")
}

// splitAddresses returns the addresses of an address field, each with its
// decoded display name; a field that does not parse is one entry, decoded.
func splitAddresses(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	list, err := mimemsg.AddressParser.ParseList(v)
	if err != nil {
		return []string{mimemsg.DecodeHeader(strings.TrimSpace(v))}
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = formatAddress(a)
	}
	return out
}

// formatAddress writes an address as "Name <addr>", unquoted: for reading,
// not for a header field.
func formatAddress(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.Name + " <" + a.Address + ">"
}

// clip cuts s to maxSummaryText bytes, on a character boundary.
func clip(s string) string {
	if len(s) <= maxSummaryText {
		return s
	}
	cut := maxSummaryText - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// insert adds e in stored-time order, evicting the oldest entry past
// maxEntries; ix.mu is held.
func (ix *mailIndex) insert(e *indexEntry) {
	i, _ := slices.BinarySearchFunc(ix.list, e, compareEntries)
	ix.list = slices.Insert(ix.list, i, e)
	ix.byID[e.ID] = e
	if len(ix.list) > ix.maxEntries {
		ix.drop(ix.list[0])
	}
}

// compareEntries orders entries by when they were stored, then by unique
// name (which, for this server's names, holds a sequence number), then by
// id, which is unique.
func compareEntries(a, b *indexEntry) int {
	return cmp.Or(a.Stored.Compare(b.Stored), strings.Compare(a.base, b.base), strings.Compare(a.ID, b.ID))
}

// drop takes e out of the index; ix.mu is held.
func (ix *mailIndex) drop(e *indexEntry) {
	if i, found := slices.BinarySearchFunc(ix.list, e, compareEntries); found {
		ix.list = slices.Delete(ix.list, i, i+1)
	}
	delete(ix.byID, e.ID)
	if e.received != nil {
		ix.transcripts = slices.DeleteFunc(ix.transcripts, func(t *indexEntry) bool { return t == e })
	}
}

// add indexes the files a message was just stored as, each with the
// envelope and transcript of the session that sent it, and returns their
// entries.
func (ix *mailIndex) add(m *Message) []*indexEntry {
	root, err := ix.root()
	if err != nil {
		return nil
	}
	var added []*indexEntry
	rc := newReceipt(m)
	for _, p := range m.Paths {
		file, ok := belowRoot(root.Name(), p)
		if !ok {
			continue
		}
		info, err := root.Lstat(file)
		if err != nil {
			continue
		}
		e := readEntry(root, file, info)
		if e == nil {
			continue
		}
		e.received = rc
		added = append(added, e)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, e := range added {
		if old := ix.byID[e.ID]; old != nil {
			ix.drop(old)
		}
		ix.insert(e)
		ix.transcripts = append(ix.transcripts, e)
	}
	for len(ix.transcripts) > ix.maxReceipts {
		ix.transcripts[0].received = nil
		ix.transcripts = ix.transcripts[1:]
	}
	return added
}

// belowRoot returns p, an absolute path the store gave, relative to the
// root dir, when it names a message file of a mailbox (mailbox/new/name).
func belowRoot(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return "", false
	}
	rel = filepath.ToSlash(rel)
	parts := strings.Split(rel, "/")
	if len(parts) != 3 || parts[0] == ".." || parts[1] != "new" && parts[1] != "cur" {
		return "", false
	}
	return rel, true
}

// wait waits for the first scan; it reports false when done ends first.
func (ix *mailIndex) wait(done <-chan struct{}) bool {
	select {
	case <-ix.ready:
		return true
	case <-done:
		return false
	}
}

// lookup returns the entry with id, or nil.
func (ix *mailIndex) lookup(id string) *indexEntry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.byID[id]
}

// page returns up to limit entries matching query ("" matches all), newest
// first, from the start-th match on, and how many match in
// all and how many the index holds.
func (ix *mailIndex) page(query string, start, limit int) (entries []*indexEntry, matched, total int) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	total = len(ix.list)
	if query == "" {
		for i := total - 1 - start; i >= 0 && len(entries) < limit; i-- {
			entries = append(entries, ix.list[i])
		}
		return entries, total, total
	}
	for i := total - 1; i >= 0; i-- {
		e := ix.list[i]
		if !e.matches(query) {
			continue
		}
		if matched >= start && len(entries) < limit {
			entries = append(entries, e)
		}
		matched++
	}
	return entries, matched, total
}

// errGone is what read and remove return for a message whose file is no
// longer in its mailbox; the entry is then dropped.
var errGone = errors.New("message no longer in the Maildir")

// read returns the stored bytes of e.
func (ix *mailIndex) read(e *indexEntry) ([]byte, error) {
	root, err := ix.root()
	if err != nil {
		return nil, err
	}
	raw, err := root.ReadFile(ix.fileOf(e))
	if errors.Is(err, fs.ErrNotExist) {
		if file, ok := ix.refind(root, e); ok {
			raw, err = root.ReadFile(file)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		ix.forget(e)
		return nil, errGone
	}
	return raw, err
}

// remove deletes e's file (this mailbox's copy only) and drops it from the
// index. A file already gone counts as removed.
func (ix *mailIndex) remove(e *indexEntry) error {
	root, err := ix.root()
	if err != nil {
		return err
	}
	err = root.Remove(ix.fileOf(e))
	if errors.Is(err, fs.ErrNotExist) {
		if file, ok := ix.refind(root, e); ok {
			err = root.Remove(file)
		} else {
			err = nil
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ix.forget(e)
	return nil
}

// all returns every entry, oldest first.
func (ix *mailIndex) all() []*indexEntry {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return slices.Clone(ix.list)
}

func (ix *mailIndex) fileOf(e *indexEntry) string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return e.file
}

func (ix *mailIndex) forget(e *indexEntry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.byID[e.ID] == e {
		ix.drop(e)
	}
}

// refind looks for e's file where a mail reader may have moved it: new/ or
// cur/ of its mailbox, under its unique name with any info. It updates the
// entry and reports whether the file is there.
func (ix *mailIndex) refind(root *os.Root, e *indexEntry) (string, bool) {
	for _, sub := range []string{"new", "cur"} {
		dir := e.Mailbox + "/" + sub
		names, err := readDirNames(root, dir)
		if err != nil {
			continue
		}
		for _, name := range names {
			if uniqueBase(name) == e.base {
				file := dir + "/" + name
				ix.mu.Lock()
				e.file = file
				ix.mu.Unlock()
				return file, true
			}
		}
	}
	return "", false
}

// receivedOf returns what this process knew of e when it received it, or
// nil.
func (ix *mailIndex) receivedOf(e *indexEntry) *receipt {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return e.received
}
