package smtpd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

// holdFirstSync returns a sync function that keeps the first batch's data
// flush waiting until want deliveries are queued behind it, so that the
// test knows how the batches form.
func holdFirstSync(g *groupCommit, want int) func([]*os.File) error {
	var once sync.Once
	return func(files []*os.File) error {
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				g.mu.Lock()
				n := len(g.pending)
				g.mu.Unlock()
				if n >= want {
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
		return syncFiles(files)
	}
}

func TestGroupCommitBatchesConcurrentDeliveries(t *testing.T) {
	root := t.TempDir()
	md, err := newMaildir(root, "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	defer md.close()
	const n = 12
	md.group.sync = holdFirstSync(&md.group, n-1)

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
	for _, stage := range []string{"data", "directories"} {
		t.Run(stage, func(t *testing.T) {
			root := t.TempDir()
			md, err := newMaildir(root, "mx.test")
			if err != nil {
				t.Fatal(err)
			}
			defer md.close()
			calls := 0
			var mu sync.Mutex
			md.group.sync = func(files []*os.File) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if stage == "data" && calls == 1 || stage == "directories" && calls == 2 {
					return errors.New("disk on fire")
				}
				return syncFiles(files)
			}
			_, err = deliver(md, "Subject: x\r\n\r\nx\r\n", "a", "b")
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
			md.group.sync = nil
			if _, err := deliver(md, "Subject: y\r\n\r\ny\r\n", "a"); err != nil {
				t.Fatalf("delivery after a failed flush: %v", err)
			}
		})
	}
}

// A delivery that cannot be moved into new/ fails alone: the others of its
// batch are stored.
func TestGroupCommitOneFailureInABatch(t *testing.T) {
	root := t.TempDir()
	md, err := newMaildir(root, "mx.test")
	if err != nil {
		t.Fatal(err)
	}
	defer md.close()
	// Open the mailbox "broken" and then take away its new/.
	if _, err := deliver(md, "first\r\n", "broken"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "broken", "new")); err != nil {
		t.Fatal(err)
	}
	const n = 6
	md.group.sync = holdFirstSync(&md.group, n-1)
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
