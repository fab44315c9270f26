// Command flushceiling measures how fast this machine's storage can make
// Maildir deliveries durable, whatever the server: it writes batches of
// 2 KiB messages into N mailboxes and makes them durable (data flushed,
// renamed into new/, new/ flushed) by several strategies, with no SMTP and
// no client in the way. Its figure is the ceiling for any server that
// answers 250 only once a message is on disk; docs/performance.md uses it.
//
//	go run ./internal/cmd/flushceiling [-dir /tmp] [-batches 30] [-sizes 1,4,16,64]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flagDir     = flag.String("dir", os.TempDir(), "directory to work in (a fresh subdirectory is made and removed)")
	flagBatches = flag.Int("batches", 30, "batches timed per strategy and size")
	flagSizes   = flag.String("sizes", "1,4,16,64", "batch sizes (messages, one per mailbox)")
)

// mailbox is one Maildir's tmp/ and new/, held open.
type mailbox struct {
	tmp, new string
	newDir   *os.File
}

// strategy makes one message per mailbox durable.
type strategy struct {
	name string
	run  func(boxes []mailbox) error
}

var message = []byte(strings.Repeat("x", 2046) + "\r\n")

var seq int

func main() {
	flag.Parse()
	var sizes []int
	for _, s := range strings.Split(*flagSizes, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "flushceiling: bad -sizes %q\n", *flagSizes)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	strategies := []strategy{
		{"each message on its own, concurrently (fsync, rename, fsync new/)", eachOnItsOwn},
		{"batch: syncfs, renames, syncfs", batchSyncfs},
		{"batch: concurrent fdatasync, renames, concurrent fsync of new/", batchConcurrent},
	}
	for _, n := range sizes {
		if err := measure(n, strategies); err != nil {
			fmt.Fprintf(os.Stderr, "flushceiling: %v\n", err)
			os.Exit(1)
		}
	}
}

// measure times the strategies in turns on n fresh mailboxes.
func measure(n int, strategies []strategy) error {
	root, err := os.MkdirTemp(*flagDir, "flushceiling")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	boxes, err := makeMailboxes(root, n)
	if err != nil {
		return err
	}
	defer func() {
		for _, b := range boxes {
			b.newDir.Close()
		}
	}()
	times := make([][]time.Duration, len(strategies))
	for range *flagBatches {
		for i, s := range strategies {
			start := time.Now()
			if err := s.run(boxes); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	for i, s := range strategies {
		slices.Sort(times[i])
		p50 := times[i][len(times[i])/2]
		fmt.Printf("batch of %3d, %-66s p50 %8v  %6.0f msg/s\n", n, s.name+":", p50.Round(time.Microsecond), float64(n)/p50.Seconds())
	}
	return nil
}

func makeMailboxes(root string, n int) ([]mailbox, error) {
	boxes := make([]mailbox, n)
	for i := range boxes {
		dir := filepath.Join(root, fmt.Sprintf("user%03d", i))
		boxes[i] = mailbox{tmp: filepath.Join(dir, "tmp"), new: filepath.Join(dir, "new")}
		for _, d := range []string{boxes[i].tmp, boxes[i].new} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
		d, err := os.Open(boxes[i].new)
		if err != nil {
			return nil, err
		}
		boxes[i].newDir = d
	}
	return boxes, nil
}

// write creates a message in b's tmp/ and leaves it open.
func (b mailbox) write() (*os.File, string, error) {
	seq++
	name := fmt.Sprintf("m%d", seq)
	f, err := os.OpenFile(filepath.Join(b.tmp, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, "", err
	}
	if _, err := f.Write(message); err != nil {
		f.Close()
		return nil, "", err
	}
	return f, name, nil
}

func (b mailbox) publish(name string) error {
	return os.Rename(filepath.Join(b.tmp, name), filepath.Join(b.new, name))
}

// eachOnItsOwn is what a server without group commit does, one session per
// mailbox at once.
func eachOnItsOwn(boxes []mailbox) error {
	return concurrently(len(boxes), func(i int) error {
		f, name, err := boxes[i].write()
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err == nil {
			err = boxes[i].publish(name)
		}
		if err == nil {
			err = boxes[i].newDir.Sync()
		}
		return err
	})
}

func batchSyncfs(boxes []mailbox) error {
	return batch(boxes, func(files []*os.File) error { return unix.Syncfs(int(files[0].Fd())) })
}

func batchConcurrent(boxes []mailbox) error {
	return batch(boxes, func(files []*os.File) error {
		return concurrently(len(files), func(i int) error { return unix.Fdatasync(int(files[i].Fd())) })
	})
}

// batch writes one message per mailbox, flushes them all, renames them,
// and flushes the new/ directories, with flush.
func batch(boxes []mailbox, flush func([]*os.File) error) error {
	files := make([]*os.File, len(boxes))
	names := make([]string, len(boxes))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, b := range boxes {
		var err error
		if files[i], names[i], err = b.write(); err != nil {
			return err
		}
	}
	if err := flush(files); err != nil {
		return err
	}
	for i, b := range boxes {
		if err := b.publish(names[i]); err != nil {
			return err
		}
	}
	dirs := make([]*os.File, len(boxes))
	for i, b := range boxes {
		dirs[i] = b.newDir
	}
	return flush(dirs)
}

func concurrently(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
