package smtpd

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxMailboxName is the longest name mailboxName may return, well under
// NAME_MAX (255) so that "<name>/tmp" stays a short path element too.
const maxMailboxName = 128

// checkMailboxName checks the properties every mailbox name must have,
// whatever the local part it came from (the README's What it does).
func checkMailboxName(t *testing.T, local, name string) {
	t.Helper()
	switch {
	case name == "":
		t.Fatalf("mailboxName(%q) is empty", local)
	case name == "." || name == "..":
		t.Fatalf("mailboxName(%q) = %q", local, name)
	case name[0] == '.':
		t.Fatalf("mailboxName(%q) = %q starts with a dot", local, name)
	case strings.ContainsAny(name, "/\\\x00"):
		t.Fatalf("mailboxName(%q) = %q holds a separator or NUL", local, name)
	case len(name) > maxMailboxName:
		t.Fatalf("mailboxName(%q) is %d octets long, want at most %d", local, len(name), maxMailboxName)
	case !utf8.ValidString(name):
		t.Fatalf("mailboxName(%q) = %q is not valid UTF-8", local, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			t.Fatalf("mailboxName(%q) = %q holds control byte %#x", local, name, c)
		}
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			t.Fatalf("mailboxName(%q) = %q holds control character %U", local, name, r)
		}
	}
	if filepath.Base(name) != name || filepath.Clean(name) != name {
		t.Fatalf("mailboxName(%q) = %q is not a single clean path element", local, name)
	}
}

// foldCase lower-cases s as mailboxes are matched: rune by rune, keeping any
// byte that is not valid UTF-8 as it is (strings.ToLower would turn each into
// U+FFFD and so merge distinct names).
func foldCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		i += n
	}
	return b.String()
}

func TestMailboxName(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name  string
		local string
		want  string // "" to check only the properties
	}{
		{name: "plain", local: "alice", want: "alice"},
		{name: "upper case", local: "Alice.Smith", want: "alice.smith"},
		{name: "atext specials kept", local: "a!#$&'*+-=?^_`{|}z", want: "a!#$&'*+-=?^_`{|}z"},
		{name: "inner dot kept", local: "a.b", want: "a.b"},
		{name: "UTF-8 kept", local: "josé", want: "josé"},
		{name: "UTF-8 upper case", local: "JOSÉ", want: "josé"},
		{name: "Greek upper case", local: "ΔΟΚΙΜΉ", want: "δοκιμή"},
		{name: "percent", local: "100%", want: "100%25"},
		{name: "parent", local: "../x"},
		{name: "absolute", local: "/etc/passwd"},
		{name: "backslash", local: `a\b`},
		{name: "Windows parent", local: `..\x`},
		{name: "NUL", local: "a\x00b"},
		{name: "control bytes", local: "a\x01\x1f\x7fb"},
		{name: "CR LF", local: "a\r\nb"},
		{name: "tab", local: "a\tb"},
		{name: "space", local: "a b"},
		{name: "C1 control", local: "a\u0085b"},
		{name: "C1 control CSI", local: "a\u009bb"},
		{name: "leading dot", local: ".hidden"},
		{name: "leading dots", local: "...x"},
		{name: "dot", local: "."},
		{name: "dot dot", local: ".."},
		{name: "three dots", local: "..."},
		{name: "empty", local: ""},
		{name: "quotes", local: `""`},
		{name: "colon", local: "a:b"},
		{name: "invalid UTF-8", local: "a\xffb"},
		{name: "invalid UTF-8 only", local: "\xc3"},
		{name: "long", local: long},
		{name: "long UTF-8", local: strings.Repeat("é", 150)},
		{name: "long escaped", local: strings.Repeat("/", 300)},
		{name: "long mixed", local: strings.Repeat("a/", 150)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mailboxName(tc.local)
			checkMailboxName(t, tc.local, got)
			if tc.want != "" && got != tc.want {
				t.Errorf("mailboxName(%q) = %q, want %q", tc.local, got, tc.want)
			}
		})
	}
}

// TestMailboxNameDistinct checks that local parts that differ other than by
// case never share a mailbox, and that ones that differ only by case do.
func TestMailboxNameDistinct(t *testing.T) {
	long := strings.Repeat("x", 300)
	// craftedShort is a short local part that spells the name mailboxName
	// gives longA after cutting it: it must not land in longA's mailbox.
	sum := sha256.Sum256([]byte(long + "a"))
	craftedShort := strings.Repeat("x", 96) + "~" + hex.EncodeToString(sum[:8])

	distinct := []struct {
		name string
		a, b string
	}{
		{name: "dot escape vs literal", a: ".x", b: "%2ex"},
		{name: "percent vs escape", a: "%", b: "%25"},
		{name: "slash vs escape", a: "a/b", b: "a%2fb"},
		{name: "NUL vs escape", a: "\x00", b: "%00"},
		{name: "empty vs two quotes", a: "", b: `""`},
		{name: "empty vs escaped quotes", a: "", b: "%22%22"},
		{name: "invalid UTF-8 bytes", a: "\xff", b: "\xfe"},
		{name: "invalid UTF-8 vs replacement character", a: "a\xffb", b: "a\ufffdb"},
		{name: "long names differing at the end", a: long + "a", b: long + "b"},
		{name: "long names differing in length", a: long, b: long + "x"},
		{name: "long vs its cut form", a: long + "a", b: craftedShort},
		{name: "long vs prefix", a: long, b: long[:128]},
	}
	for _, tc := range distinct {
		t.Run(tc.name, func(t *testing.T) {
			if foldCase(tc.a) == foldCase(tc.b) {
				t.Fatalf("bad test: %q and %q differ only by case", tc.a, tc.b)
			}
			na, nb := mailboxName(tc.a), mailboxName(tc.b)
			if na == nb {
				t.Errorf("mailboxName(%q) = mailboxName(%q) = %q, want distinct names", tc.a, tc.b, na)
			}
		})
	}

	same := []struct {
		name string
		a, b string
	}{
		{name: "ASCII", a: "Alice", b: "aLICE"},
		{name: "UTF-8", a: "JOSÉ", b: "josé"},
		{name: "escaped bytes", a: "A/B", b: "a/b"},
		{name: "long", a: strings.Repeat("A", 300), b: strings.Repeat("a", 300)},
		{name: "long UTF-8", a: strings.Repeat("É", 150), b: strings.Repeat("é", 150)},
	}
	for _, tc := range same {
		t.Run("case/"+tc.name, func(t *testing.T) {
			na, nb := mailboxName(tc.a), mailboxName(tc.b)
			if na != nb {
				t.Errorf("mailboxName(%q) = %q, mailboxName(%q) = %q; want one mailbox", tc.a, na, tc.b, nb)
			}
		})
	}
}

func FuzzMailboxName(f *testing.F) {
	for _, s := range []string{"alice", "Alice.Smith", "../x", "/etc/passwd", `a\b`, "\x00", ".", "..", "", "%", "ÉCOLE", "\xff", strings.Repeat("x", 300)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := mailboxName(a), mailboxName(b)
		checkMailboxName(t, a, na)
		checkMailboxName(t, b, nb)
		if mailboxName(a) != na {
			t.Fatalf("mailboxName(%q) is not deterministic", a)
		}
		if foldCase(a) != foldCase(b) && na == nb {
			t.Fatalf("mailboxName(%q) = mailboxName(%q) = %q, want distinct names", a, b, na)
		}
		if foldCase(a) == foldCase(b) && na != nb {
			t.Fatalf("mailboxName(%q) = %q, mailboxName(%q) = %q; want one mailbox", a, na, b, nb)
		}
	})
}

// testMaildir opens a maildir on a fresh temporary root.
func testMaildir(t *testing.T) (*maildir, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	md, err := newMaildir(dir, "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.close() })
	return md, dir
}

// testPrefix is the header block the deliveries of these tests add.
func testPrefix(seen headerSet) []byte {
	return []byte("Return-Path: <bob@example.net>\n")
}

// listDir returns the names in dir, or fails the test.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// checkEmpty fails unless tmp/ and new/ of each mailbox are empty (or absent).
func checkEmpty(t *testing.T, root string, boxes ...string) {
	t.Helper()
	for _, box := range boxes {
		for _, sub := range []string{"tmp", "new", "cur"} {
			dir := filepath.Join(root, box, sub)
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue // absent, or not a directory: holds no message
			}
			if len(entries) > 0 {
				t.Errorf("%s holds %d files, want none", filepath.Join(box, sub), len(entries))
			}
		}
	}
}

func TestDeliveryCommit(t *testing.T) {
	md, root := testMaildir(t)
	boxes := []string{"alice", "bob", "carol"}
	d, err := createWire(md, boxes)
	if err != nil {
		t.Fatal(err)
	}
	wire := "Subject: hi\r\n\r\nline one\r\nbare\rcr\r\n\r\nend\r\n"
	// Write in awkward pieces, splitting CRLFs.
	for _, part := range []string{"Subject: hi\r", "\n\r", "\nline one\r\nbare\r", "cr\r\n\r\nend\r\n"} {
		if _, err := io.WriteString(d, part); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := d.commit()
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	want := "Return-Path: <bob@example.net>\n" + strings.ReplaceAll(wire, "\r\n", "\n")
	if len(paths) != len(boxes) {
		t.Fatalf("commit returned %d paths, want %d", len(paths), len(boxes))
	}
	var first os.FileInfo
	for i, box := range boxes {
		names := listDir(t, filepath.Join(root, box, "new"))
		if len(names) != 1 {
			t.Fatalf("%s/new holds %q, want one file", box, names)
		}
		if tmp := listDir(t, filepath.Join(root, box, "tmp")); len(tmp) != 0 {
			t.Errorf("%s/tmp holds %q, want nothing", box, tmp)
		}
		if cur := listDir(t, filepath.Join(root, box, "cur")); len(cur) != 0 {
			t.Errorf("%s/cur holds %q, want nothing", box, cur)
		}
		p := filepath.Join(root, box, "new", names[0])
		absRoot, _ := filepath.Abs(root)
		if wantPath := filepath.Join(absRoot, box, "new", names[0]); paths[i] != wantPath {
			t.Errorf("path %d = %q, want %q", i, paths[i], wantPath)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s holds %q, want %q", p, got, want)
		}
		if names[0] != filepath.Base(paths[0]) {
			t.Errorf("%s/new/%s has another name than %s", box, names[0], paths[0])
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		if first == nil {
			first = fi
		} else if !os.SameFile(first, fi) {
			t.Logf("%s is a copy, not a link (links not possible here?)", p)
		}
	}
}

func TestDeliveryEmptyMessage(t *testing.T) {
	md, root := testMaildir(t)
	d, err := createWire(md, []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}
	paths, err := d.commit()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "Return-Path: <bob@example.net>\n"; string(got) != want {
		t.Errorf("stored %q, want %q", got, want)
	}
	if tmp := listDir(t, filepath.Join(root, "alice", "tmp")); len(tmp) != 0 {
		t.Errorf("alice/tmp holds %q, want nothing", tmp)
	}
}

func TestDeliveryFailures(t *testing.T) {
	tests := []struct {
		name  string
		boxes []string
		// setup breaks the Maildir before the delivery starts.
		setup func(t *testing.T, root string)
		// break_ breaks the delivery after the message is written.
		break_ func(t *testing.T, d *delivery)
		// wantCreateErr says create, not commit, must fail.
		wantCreateErr bool
	}{
		{
			name:   "second new/ replaced by a file",
			boxes:  []string{"alice", "bob"},
			break_: replaceByFile("bob", "new"),
		},
		{
			name:   "first new/ replaced by a file",
			boxes:  []string{"alice", "bob"},
			break_: replaceByFile("alice", "new"),
		},
		{
			name:   "last new/ of three replaced by a file",
			boxes:  []string{"alice", "bob", "carol"},
			break_: replaceByFile("carol", "new"),
		},
		{
			name:   "first mailbox removed",
			boxes:  []string{"alice", "bob"},
			break_: replaceByFile("alice", ""),
		},
		{
			name:          "second new/ is a file",
			boxes:         []string{"alice", "bob"},
			setup:         func(t *testing.T, root string) { makeFile(t, filepath.Join(root, "bob", "new")) },
			wantCreateErr: true,
		},
		{
			name:          "second tmp/ is a file",
			boxes:         []string{"alice", "bob"},
			setup:         func(t *testing.T, root string) { makeFile(t, filepath.Join(root, "bob", "tmp")) },
			wantCreateErr: true,
		},
		{
			name:   "writing the file fails",
			boxes:  []string{"alice", "bob"},
			break_: func(_ *testing.T, d *delivery) { d.file.Close() },
		},
		{
			name:          "mailbox is a file",
			boxes:         []string{"alice", "bob"},
			setup:         func(t *testing.T, root string) { makeFile(t, filepath.Join(root, "bob")) },
			wantCreateErr: true,
		},
		{
			name:          "first tmp is a file",
			boxes:         []string{"alice", "bob"},
			setup:         func(t *testing.T, root string) { makeFile(t, filepath.Join(root, "alice", "tmp")) },
			wantCreateErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md, root := testMaildir(t)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			d, err := createWire(md, tc.boxes)
			if tc.wantCreateErr {
				if err == nil {
					d.abort()
					t.Fatalf("create(%q) succeeded, want an error", tc.boxes)
				}
				checkEmpty(t, root, tc.boxes...)
				return
			}
			if err != nil {
				t.Fatalf("create(%q): %v", tc.boxes, err)
			}
			if _, err := io.WriteString(d, "Subject: x\r\n\r\nbody\r\n"); err != nil {
				t.Fatal(err)
			}
			if tc.break_ != nil {
				tc.break_(t, d.delivery)
			}
			paths, err := d.commit()
			if err == nil {
				t.Fatalf("commit succeeded with paths %q, want an error", paths)
			}
			checkEmpty(t, root, tc.boxes...)
		})
	}
}

// replaceByFile returns a break_ function that removes box/sub (the whole
// mailbox if sub is "") and puts a file in its place, so that the mailbox
// cannot be made again.
func replaceByFile(box, sub string) func(*testing.T, *delivery) {
	return func(t *testing.T, d *delivery) {
		p := filepath.Join(d.md.dir, box, sub)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		makeFile(t, p)
	}
}

// makeFile creates a regular file at p, and the directories above it.
func makeFile(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveryAbort(t *testing.T) {
	md, root := testMaildir(t)
	boxes := []string{"alice", "bob"}
	d, err := createWire(md, boxes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(d, strings.Repeat("some data\r\n", 10000)); err != nil {
		t.Fatal(err)
	}
	d.abort()
	checkEmpty(t, root, boxes...)
}

// TestDeliveryConfined checks the second guard: a mailbox name that would
// leave the root (were mailboxName ever bypassed) is refused by os.Root.
func TestDeliveryConfined(t *testing.T) {
	md, root := testMaildir(t)
	for _, box := range []string{"../escape", "/tmp/escape", "a/../../escape"} {
		d, err := createWire(md, []string{box})
		if err == nil {
			d.abort()
			t.Errorf("create(%q) succeeded, want an error", box)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); !os.IsNotExist(err) {
		t.Errorf("a directory was made outside the root: %v", err)
	}
}

func TestUniqueName(t *testing.T) {
	md, err := newMaildir(t.TempDir(), "host/with:colon")
	if err != nil {
		t.Fatal(err)
	}
	defer md.close()
	now := time.Unix(1700000000, 123456789)
	seen := make(map[string]bool)
	for i := 0; i < 10000; i++ {
		name := md.uniqueName(now)
		if seen[name] {
			t.Fatalf("uniqueName returned %q twice", name)
		}
		seen[name] = true
	}
	name := md.uniqueName(now)
	if !strings.HasPrefix(name, "1700000000.M123456P") {
		t.Errorf("uniqueName = %q, want it to start with the time", name)
	}
	if want := `.host\057with\072colon`; !strings.HasSuffix(name, want) {
		t.Errorf("uniqueName = %q, want it to end with %q", name, want)
	}
	if strings.ContainsAny(name, "/:") {
		t.Errorf("uniqueName = %q holds '/' or ':'", name)
	}
}

// TestDeliveryNamesDistinct checks that many deliveries into one mailbox
// each get their own file.
func TestDeliveryNamesDistinct(t *testing.T) {
	md, root := testMaildir(t)
	const n = 50
	for i := 0; i < n; i++ {
		d, err := createWire(md, []string{"alice"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.commit(); err != nil {
			t.Fatal(err)
		}
	}
	names := listDir(t, filepath.Join(root, "alice", "new"))
	if len(names) != n || len(slices.Compact(slices.Sorted(slices.Values(names)))) != n {
		t.Errorf("alice/new holds %d distinct files, want %d", len(names), n)
	}
}

// TestDeliveryAfterMailboxRemoved checks that a mailbox removed while the
// server runs (by an administrator, or a cleanup job) is made again at the
// next delivery, rather than failing every delivery to it until a restart.
func TestDeliveryAfterMailboxRemoved(t *testing.T) {
	md, root := testMaildir(t)
	deliver := func() error {
		d, err := createWire(md, []string{"alice"})
		if err != nil {
			return err
		}
		io.WriteString(d, "hi\r\n")
		_, err = d.commit()
		return err
	}
	if err := deliver(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "alice")); err != nil {
		t.Fatal(err)
	}
	if err := deliver(); err != nil {
		t.Fatalf("delivery after alice/ was removed: %v", err)
	}
	if names := listDir(t, filepath.Join(root, "alice", "new")); len(names) != 1 {
		t.Errorf("alice/new holds %q, want one file", names)
	}
}

// wireDelivery is a delivery written to in the wire form, through a
// storedWriter, as the session writes it.
type wireDelivery struct {
	*delivery
	sw *storedWriter
}

func createWire(md *maildir, boxes []string) (*wireDelivery, error) {
	d, err := md.create(boxes)
	if err != nil {
		return nil, err
	}
	return &wireDelivery{d, newStoredWriter(d, testPrefix)}, nil
}

func (w *wireDelivery) Write(p []byte) (int, error) { return w.sw.Write(p) }

// commit writes what the storedWriter holds back, then commits.
func (w *wireDelivery) commit() ([]string, error) {
	if err := w.sw.Close(); err != nil {
		w.abort()
		return nil, err
	}
	return w.delivery.commit()
}
