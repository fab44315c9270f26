package smtpd

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Group commit.
//
// A durable delivery needs two flushes to stable storage: one for the
// message's data before it appears in new/, one for the directory entry
// after. Flushes, not the bytes, are what a delivery costs, so deliveries
// that arrive while a flush runs wait for it to end and are then committed
// together, with the same two flushes for the whole batch. There is no
// background goroutine: the first delivery to arrive leads the first batch;
// when a batch is done, the first delivery that queued meanwhile leads the
// next one. A lone delivery is committed at once, as before, so one client
// waits no longer than without batching.
//
// The next batch's data flush may run while a batch's names are flushed.
// On Linux a batch's flush is one syncfs(2) per file system, which writes
// back the files of the batch in one pass and commits the journal once.
// Elsewhere the batch's files (then its directories) are fsynced
// concurrently, which lets the file system merge them.

// groupCommit queues deliveries and commits them in batches.
type groupCommit struct {
	mu      sync.Mutex
	pending []*delivery // waiting for the next batch, in order of arrival
	busy    bool        // a batch is being committed

	batches atomic.Uint64 // batches that made at least one delivery durable

	// beforeFlush, if set, runs before each flush of a batch, with the
	// stage ("data" or "names"); an error fails the flush. Tests hold a
	// batch or make it fail with it.
	beforeFlush func(stage string) error
}

// maxBatch bounds a batch, so that one leader does not hold hundreds of
// sessions behind a single flush.
const maxBatch = 256

// commit returns once d is durable in every mailbox's new/, or with an
// error once nothing of it is left in new/.
func (g *groupCommit) commit(d *delivery) error {
	d.wake = make(chan bool, 1)
	g.mu.Lock()
	g.pending = append(g.pending, d)
	if g.busy {
		g.mu.Unlock()
		if lead := <-d.wake; !lead {
			return d.err
		}
	} else {
		g.busy = true
		g.mu.Unlock()
	}
	g.lead(d)
	return d.err
}

// lead commits the pending deliveries, leader included. Once their data is
// on disk it hands the lead to the first delivery that queued meanwhile, so
// that the next batch's data flush runs while this batch's names are being
// flushed: the two flushes of neighbouring batches overlap.
func (g *groupCommit) lead(leader *delivery) {
	g.mu.Lock()
	n := min(len(g.pending), maxBatch)
	batch := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()

	dataSynced := g.syncData(batch)
	g.handOver()
	if dataSynced && g.publishAll(batch) {
		g.batches.Add(1)
	}
	for _, d := range batch {
		if d != leader {
			d.wake <- false
		}
	}
}

// handOver wakes the next leader, if any delivery is waiting.
func (g *groupCommit) handOver() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) > 0 {
		g.pending[0].wake <- true
		return
	}
	g.busy = false
	g.pending = nil // let the old array go
}

// flush runs one flush of a batch, after the test's hook if there is one.
func (g *groupCommit) flush(stage string, sync func() error) error {
	if g.beforeFlush != nil {
		if err := g.beforeFlush(stage); err != nil {
			return err
		}
	}
	return sync()
}

// syncData flushes the data of the batch's files to disk. If that fails,
// every delivery of the batch fails.
func (g *groupCommit) syncData(batch []*delivery) bool {
	files := make([]*os.File, len(batch))
	for i, d := range batch {
		files[i] = d.file
	}
	if err := g.flush("data", func() error { return syncFiles(files) }); err != nil {
		for _, d := range batch {
			d.err = fmt.Errorf("maildir: sync: %w", err)
			d.takeBack(nil)
		}
		return false
	}
	return true
}

// publishAll puts every message of the batch into its mailboxes' new/ and
// flushes the directories. Each delivery's err says how it ended; a failed
// delivery leaves nothing behind. It reports whether any delivery
// succeeded.
func (g *groupCommit) publishAll(batch []*delivery) bool {
	var published []*delivery
	for _, d := range batch {
		if d.err = d.publish(); d.err == nil {
			published = append(published, d)
		}
	}
	if len(published) == 0 {
		return false
	}
	md := published[0].md
	err := g.flush("names", func() error { return md.syncNewDirs(mailboxesOf(published)) })
	if err != nil {
		for _, d := range published {
			d.err = fmt.Errorf("maildir: sync new/: %w", err)
			d.takeBack(d.boxes)
		}
		return false
	}
	return true
}

// mailboxesOf lists the mailboxes of the deliveries, each once.
func mailboxesOf(batch []*delivery) []string {
	var boxes []string
	seen := make(map[string]bool)
	for _, d := range batch {
		for _, box := range d.boxes {
			if !seen[box] {
				seen[box] = true
				boxes = append(boxes, box)
			}
		}
	}
	return boxes
}

// syncFiles flushes files to stable storage: one fsync for one file; for
// several, one syncfs per file system where there is syncfs, and
// concurrent fsyncs elsewhere.
func syncFiles(files []*os.File) error {
	switch {
	case len(files) == 0:
		return nil
	case len(files) == 1:
		return files[0].Sync()
	case haveSyncfs:
		return syncFileSystems(files)
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() { errs[i] = f.Sync() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxConcurrentDirSyncs bounds the directories fsynced at once where there
// is no syncfs, and so the mailboxes a batch holds open for it.
const maxConcurrentDirSyncs = 16

// syncNewDirs flushes the new/ directories of the mailboxes: one fsync for
// one mailbox; for several, one syncfs per file system where there is
// syncfs, and fsyncs a few at a time elsewhere. It opens the mailboxes
// through the cache, one per flush.
func (md *maildir) syncNewDirs(boxes []string) error {
	fsyncNew := func(mb *mailbox) error { return mb.new.Sync() }
	switch {
	case len(boxes) == 1:
		return md.with(boxes[0], fsyncNew)
	case haveSyncfs:
		flushed := make(map[uint64]bool)
		for _, box := range boxes {
			err := md.with(box, func(mb *mailbox) error {
				if flushed[mb.dev] {
					return nil
				}
				flushed[mb.dev] = true
				return syncFileSystem(mb.new)
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, len(boxes))
	turns := make(chan struct{}, maxConcurrentDirSyncs)
	var wg sync.WaitGroup
	for i, box := range boxes {
		turns <- struct{}{}
		wg.Go(func() {
			errs[i] = md.with(box, fsyncNew)
			<-turns
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
