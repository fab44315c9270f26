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
// message's data before it is renamed into new/, one for the directory entry
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

	// sync flushes a batch's files, then its directories: syncFiles,
	// unless a test puts a slow or failing one in its place.
	sync func([]*os.File) error
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

	sync := g.sync
	if sync == nil {
		sync = syncFiles
	}
	dataSynced := syncData(batch, sync)
	g.handOver()
	if dataSynced && publishAll(batch, sync) {
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

// syncData flushes the data of the batch's files to disk. If that fails,
// every delivery of the batch fails.
func syncData(batch []*delivery, sync func([]*os.File) error) bool {
	files := make([]*os.File, len(batch))
	for i, d := range batch {
		files[i] = d.file
	}
	if err := sync(files); err != nil {
		for _, d := range batch {
			d.fail(fmt.Errorf("maildir: sync: %w", err), nil)
		}
		return false
	}
	return true
}

// publishAll renames every message of the batch into its mailboxes' new/
// and flushes the directories. Each delivery's err says how it ended; a
// failed delivery leaves nothing behind. It reports whether any delivery
// succeeded.
func publishAll(batch []*delivery, sync func([]*os.File) error) bool {
	var published []*delivery
	for _, d := range batch {
		if d.publish() {
			published = append(published, d)
		}
	}
	if err := sync(newDirs(published)); err != nil {
		for _, d := range published {
			d.fail(fmt.Errorf("maildir: sync new/: %w", err), d.boxes)
		}
		return false
	}
	return len(published) > 0
}

// publish renames the message into each mailbox's new/; on failure it takes
// back what it moved, and reports false.
func (d *delivery) publish() bool {
	for i, mb := range d.boxes {
		if err := mb.publish(d.name); err != nil {
			d.fail(fmt.Errorf("maildir: move into %q: %w", mb.name+"/new", err), d.boxes[:i])
			return false
		}
	}
	return true
}

// fail ends the delivery with err, removing its file from the new/ of the
// mailboxes published and from the tmp/ of the others.
func (d *delivery) fail(err error, published []*mailbox) {
	d.err = err
	d.removeNew(published)
	d.removeTmp(d.boxes[len(published):])
}

// newDirs lists the new/ directories of the deliveries' mailboxes, each once.
func newDirs(batch []*delivery) []*os.File {
	var dirs []*os.File
	seen := make(map[*mailbox]bool)
	for _, d := range batch {
		for _, mb := range d.boxes {
			if !seen[mb] {
				seen[mb] = true
				dirs = append(dirs, mb.new)
			}
		}
	}
	return dirs
}

// syncFiles flushes files (or directories) to stable storage: one fsync for
// one file; for several, one syncfs per file system where there is syncfs,
// and concurrent fsyncs elsewhere.
func syncFiles(files []*os.File) error {
	switch {
	case len(files) == 0:
		return nil
	case len(files) == 1:
		return files[0].Sync()
	case haveSyncfs:
		return syncFileSystems(files)
	}
	return syncConcurrently(files)
}

func syncConcurrently(files []*os.File) error {
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Go(func() { errs[i] = f.Sync() })
	}
	wg.Wait()
	return errors.Join(errs...)
}
