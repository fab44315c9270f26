package smtpd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deliver stores body for the mailboxes through md and returns what commit
// returned.
func deliver(md *maildir, body string, boxes ...string) ([]string, error) {
	d, err := md.create(boxes)
	if err != nil {
		return nil, err
	}
	if _, err := d.Write([]byte(body)); err != nil {
		d.abort()
		return nil, err
	}
	return d.commit()
}

// filesIn lists the regular files in root/box/sub.
func filesIn(t *testing.T, root, box, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, box, sub))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// holdFirstFlush returns a flush hook that keeps the first batch's data
// flush waiting until want deliveries are queued behind it, so that the
// test knows how the batches form, and then calls then, if it is not nil.
func holdFirstFlush(g *groupCommit, want int, then func()) func(string) error {
	var once sync.Once
	return func(string) error {
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				g.mu.Lock()
				n := len(g.pending)
				g.mu.Unlock()
				if n >= want {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if then != nil {
				then()
			}
		})
		return nil
	}
}

func TestGroupCommitBatchesConcurrentDeliveries(t *testing.T) {
	md, root := testMaildir(t)
	const n = 12
	md.group.beforeFlush = holdFirstFlush(&md.group, n-1, nil)

	paths := make([][]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			boxes := []string{fmt.Sprintf("user%d", i%3)}
			if i%4 == 0 {
				boxes = append(boxes, "all")
			}
			paths[i], errs[i] = deliver(md, fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i), boxes...)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		for _, p := range paths[i] {
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
			if want := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i); string(got) != want {
				t.Errorf("%s holds %q, want %q", p, got, want)
			}
		}
	}
	// The first delivery is committed alone; the other n-1 queued behind
	// its flush and share the second batch.
	if got := md.group.batches.Load(); got != 2 {
		t.Errorf("%d deliveries took %d batches, want 2", n, got)
	}
	total := 0
	for _, box := range []string{"user0", "user1", "user2", "all"} {
		total += len(filesIn(t, root, box, "new"))
		if tmp := filesIn(t, root, box, "tmp"); len(tmp) != 0 {
			t.Errorf("%s/tmp keeps %v", box, tmp)
		}
	}
	if want := n + n/4; total != want {
		t.Errorf("%d files in new/, want %d", total, want)
	}
}

func TestGroupCommitFailedFlushLeavesNothing(t *testing.T) {
	for _, stage := range []string{"data", "names"} {
		t.Run(stage, func(t *testing.T) {
			md, root := testMaildir(t)
			md.group.beforeFlush = func(s string) error {
				if s == stage {
					return errors.New("disk on fire")
				}
				return nil
			}
			_, err := deliver(md, "Subject: x\r\n\r\nx\r\n", "a", "b")
			if err == nil {
				t.Fatal("commit succeeded although a flush failed")
			}
			for _, box := range []string{"a", "b"} {
				for _, sub := range []string{"tmp", "new"} {
					if left := filesIn(t, root, box, sub); len(left) != 0 {
						t.Errorf("%s/%s keeps %v", box, sub, left)
					}
				}
			}
			if got := md.group.batches.Load(); got != 0 {
				t.Errorf("batches = %d after a failed flush, want 0", got)
			}
			// The store still works afterwards.
			md.group.beforeFlush = nil
			if _, err := deliver(md, "Subject: y\r\n\r\ny\r\n", "a"); err != nil {
				t.Fatalf("delivery after a failed flush: %v", err)
			}
		})
	}
}

// A delivery that cannot be moved into new/ fails alone: the others of its
// batch are stored.
func TestGroupCommitOneFailureInABatch(t *testing.T) {
	md, root := testMaildir(t)
	// Open the mailbox "broken", then put a file in the place of its new/.
	if _, err := deliver(md, "first\r\n", "broken"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "broken", "new")); err != nil {
		t.Fatal(err)
	}
	makeFile(t, filepath.Join(root, "broken", "new"))
	const n = 6
	md.group.beforeFlush = holdFirstFlush(&md.group, n-1, nil)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			box := "good"
			if i == n-1 {
				box = "broken"
			}
			_, errs[i] = deliver(md, fmt.Sprintf("message %d\r\n", i), box)
		})
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != 1 || errs[n-1] == nil {
		t.Fatalf("errors %v: want only the last delivery to fail", errs)
	}
	if got := len(filesIn(t, root, "good", "new")); got != n-1 {
		t.Errorf("good/new holds %d messages, want %d", got, n-1)
	}
	if left := filesIn(t, root, "broken", "tmp"); len(left) != 0 {
		t.Errorf("broken/tmp keeps %v", left)
	}
}

// TestMailboxCacheBound checks that concurrent deliveries to more
// mailboxes than the cache holds all succeed, with never more mailboxes
// open than the bound: a step waits for room rather than opening more.
func TestMailboxCacheBound(t *testing.T) {
	md, root := testMaildir(t)
	md.maxOpen = 2
	var most atomic.Int64
	md.group.beforeFlush = func(string) error {
		md.mu.Lock()
		n := int64(len(md.boxes))
		md.mu.Unlock()
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		return nil
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = deliver(md, fmt.Sprintf("message %d\r\n", i), fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), "all")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
	}
	if got := len(filesIn(t, root, "all", "new")); got != n {
		t.Errorf("all/new holds %d messages, want %d", got, n)
	}
	if m := most.Load(); m > 2 {
		t.Errorf("%d mailboxes open at once, want at most 2", m)
	}
}

// TestFailedCleanupLogged checks that a message file that cannot be
// removed after a failed commit is logged with its path: one left in new/
// was refused with 451 although a reader can see it, and the client's
// retry will deliver it again.
func TestFailedCleanupLogged(t *testing.T) {
	for _, tc := range []struct {
		stage, sub, level, says string
		named                   bool
	}{
		{stage: "names", sub: "new", level: "ERROR", says: "stays in new/"},
		{stage: "data", sub: "tmp", level: "WARN", says: "cannot remove", named: true},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			md, root := testMaildir(t)
			var log strings.Builder
			md.log = slog.New(slog.NewTextHandler(&log, nil))
			md.noUnnamed.Store(tc.named)
			var stuck string
			md.group.beforeFlush = func(stage string) error {
				if stage != tc.stage {
					return nil
				}
				// Put a directory in the place of the message's
				// file: unlink(2) cannot remove it.
				names := filesIn(t, root, "alice", tc.sub)
				if len(names) != 1 {
					t.Fatalf("alice/%s holds %q, want one file", tc.sub, names)
				}
				stuck = filepath.Join(root, "alice", tc.sub, names[0])
				if err := os.Remove(stuck); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(stuck, 0o700); err != nil {
					t.Fatal(err)
				}
				return errors.New("disk on fire")
			}
			if _, err := deliver(md, "Subject: x\r\n\r\nx\r\n", "alice"); err == nil {
				t.Fatal("commit succeeded although a flush failed")
			}
			got := log.String()
			if !strings.Contains(got, "level="+tc.level) || !strings.Contains(got, tc.says) || !strings.Contains(got, stuck) {
				t.Errorf("log %q: want a %s line saying %q with the path %s", got, tc.level, tc.says, stuck)
			}
		})
	}
}
