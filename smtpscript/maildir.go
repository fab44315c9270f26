package smtpscript

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// mail-count [-wait] DIR N: see the package documentation.
func cmdMailCount(ts *testscript.TestScript, neg bool, args []string) {
	wait := len(args) > 0 && args[0] == "-wait"
	if wait {
		args = args[1:]
	}
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mail-count [-wait] DIR N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	dir := ts.MkAbs(args[0])
	count := func() int {
		entries, _ := os.ReadDir(filepath.Join(dir, "new"))
		return len(entries)
	}
	if wait {
		deadline := time.Now().Add(timeoutOf(ts))
		for count() < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := len(readDirNames(ts, filepath.Join(dir, "new"))); got != want {
		ts.Fatalf("mail-count: %s/new holds %d messages, want %d", args[0], got, want)
	}
	if tmp := readDirNames(ts, filepath.Join(dir, "tmp")); len(tmp) != 0 {
		ts.Fatalf("mail-count: %s/tmp is not empty: %q", args[0], tmp)
	}
}

// mail-cat [-body] DIR: see the package documentation. With -body, each
// message's body is what follows its first empty line ("" when there is
// none), so that cmp can check it byte for byte, bare CRs and 8-bit bytes
// included, against a plain-text file.
func cmdMailCat(ts *testscript.TestScript, neg bool, args []string) {
	body := len(args) > 0 && args[0] == "-body"
	if body {
		args = args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mail-cat [-body] DIR")
	}
	dir := filepath.Join(ts.MkAbs(args[0]), "new")
	for _, name := range readDirNames(ts, dir) {
		msg := ts.ReadFile(filepath.Join(dir, name))
		if body {
			_, b, _ := strings.Cut(msg, "\n\n")
			fmt.Fprintf(ts.Stdout(), "%s\n", strconv.Quote(b))
			continue
		}
		fmt.Fprintf(ts.Stdout(), "== %s\n", name)
		ts.Stdout().Write([]byte(msg))
	}
}

// readDirNames lists a Maildir subdirectory in delivery order: the unique
// names begin with seconds and microseconds.
func readDirNames(ts *testscript.TestScript, dir string) []string {
	entries, err := os.ReadDir(dir)
	ts.Check(err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.SortFunc(names, compareMaildirNames)
	return names
}

// compareMaildirNames orders "<sec>.M<usec>P…" names by time.
func compareMaildirNames(a, b string) int {
	key := func(s string) (int64, int64) {
		sec, rest, _ := strings.Cut(s, ".M")
		usec, _, _ := strings.Cut(rest, "P")
		x, _ := strconv.ParseInt(sec, 10, 64)
		y, _ := strconv.ParseInt(usec, 10, 64)
		return x, y
	}
	as, au := key(a)
	bs, bu := key(b)
	if as != bs {
		return int(as - bs)
	}
	if au != bu {
		return int(au - bu)
	}
	return strings.Compare(a, b)
}

// landedWait bounds how long mail-landed waits for a message to show up:
// a server may store a message after its 250 (which this server never
// does).
const landedWait = 5 * time.Second

// [!] mail-landed MAILBOX [FILE]: see the package documentation.
func cmdMailLanded(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: mail-landed MAILBOX [FILE]")
	}
	root := ts.Getenv("SMTP_MAILDIR")
	if root == "" {
		return
	}
	before := setupOf(ts, "mail-landed").before
	want := ""
	if len(args) == 2 {
		want = lf(ts.ReadFile(args[1]))
	}
	root = ts.MkAbs(root)
	mailbox := filepath.Join(root, args[0])
	// tmp/ empties once the server is done with a message, delivered or
	// not (a client that vanished mid-DATA leaves a partial one there
	// for a moment): wait for that before looking at new/.
	tmpEmpty := waitFor(func() bool { return isEmptyDir(filepath.Join(mailbox, "tmp")) })
	found := ""
	if !neg {
		waitFor(func() bool { found = landed(root, args[0], before, want); return found != "" })
	} else {
		found = landed(root, args[0], before, want)
	}
	switch {
	case found == "" && !neg:
		ts.Fatalf("mail-landed: no new message in %s/new %s", mailbox, wanted(args))
	case found != "" && neg:
		ts.Fatalf("mail-landed: %s landed %s", found, wanted(args))
	case !tmpEmpty:
		ts.Fatalf("mail-landed: %s/tmp is not empty", mailbox)
	}
}

// waitFor waits until done returns true, or landedWait passes, and
// returns done's last answer.
func waitFor(done func() bool) bool {
	for deadline := time.Now().Add(landedWait); ; time.Sleep(20 * time.Millisecond) {
		if done() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// isEmptyDir reports whether dir holds no file (or does not exist).
func isEmptyDir(dir string) bool {
	entries, _ := os.ReadDir(dir)
	return len(entries) == 0
}

func wanted(args []string) string {
	if len(args) == 2 {
		return "ending with " + args[1]
	}
	return ""
}

// landed returns the name of a message file in root/mailbox/new that is
// not one of before and ends with want, or "".
func landed(root, mailbox string, before map[string]bool, want string) string {
	dir := filepath.Join(root, mailbox, "new")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if before[filepath.Join(mailbox, "new", e.Name())] {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasSuffix(lf(string(data)), want) {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// maildirFiles returns the messages in the new/ of every mailbox of root,
// as "MAILBOX/new/NAME".
func maildirFiles(root string) map[string]bool {
	files := make(map[string]bool)
	names, _ := filepath.Glob(filepath.Join(root, "*", "new", "*"))
	for _, name := range names {
		if rel, err := filepath.Rel(root, name); err == nil {
			files[rel] = true
		}
	}
	return files
}

// lf turns CRLF line endings into LF: a Maildir may hold either.
func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
