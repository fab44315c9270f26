// Command storecost measures what the file operations of one Maildir
// delivery cost on this machine, with no SMTP and no server in the way, in
// 100 mailboxes made as smtpd makes them:
//
//   - the CPU time of putting a 2 KiB message into new/, by the two ways
//     smtpd has: a named file (create in tmp/, write, rename into new/) and
//     an unnamed one (O_TMPFILE in tmp/, write, linkat into new/), taken in
//     turns, a chunk of each at a time, on one thread;
//   - how long a flush takes: fsync of a new 2 KiB file alone, and with 16
//     goroutines at once, and fsync of new/ after a rename.
//
// docs/performance.md quotes both.
//
//	go run ./internal/cmd/storecost [-dir /tmp] [-chunks 20] [-flushes 200]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flagDir     = flag.String("dir", os.TempDir(), "directory to work in (a fresh subdirectory is made and removed)")
	flagChunks  = flag.Int("chunks", 20, "chunks of 500 deliveries timed per way")
	flagFlushes = flag.Int("flushes", 200, "flushes timed per kind")
)

var message = []byte(fmt.Sprintf("%2046s\r\n", "x"))

// mailbox is one Maildir's tmp/ and new/, held open.
type mailbox struct{ tmp, new int }

func main() {
	flag.Parse()
	root, err := os.MkdirTemp(*flagDir, "storecost.")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(root)
	boxes, err := makeMailboxes(root, 100)
	if err != nil {
		fail(err)
	}
	if err := fileCost(boxes, *flagChunks, 500); err != nil {
		fail(err)
	}
	if err := flushLatency(boxes, *flagFlushes); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "storecost:", err)
	os.Exit(1)
}

func makeMailboxes(root string, n int) ([]mailbox, error) {
	boxes := make([]mailbox, n)
	for i := range boxes {
		dir := filepath.Join(root, fmt.Sprintf("user%03d", i))
		for _, sub := range []string{"", "tmp", "new", "cur"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, err
			}
			if sub == "" {
				spread(dir)
			}
		}
		var err error
		if boxes[i].tmp, err = unix.Open(filepath.Join(dir, "tmp"), unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
			return nil, err
		}
		if boxes[i].new, err = unix.Open(filepath.Join(dir, "new"), unix.O_RDONLY|unix.O_DIRECTORY, 0); err != nil {
			return nil, err
		}
	}
	return boxes, nil
}

// spread marks dir FS_TOPDIR_FL, as smtpd marks a new mailbox (see
// topdir_linux.go), so that its subdirectories land where smtpd's would.
func spread(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	const fsTopDirFlag = 0x00020000
	if flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil {
		unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
	}
}

var seq atomic.Int64

func nextName() string { return "m" + strconv.FormatInt(seq.Add(1), 10) }

// named puts a message into new/ through a named file in tmp/.
func named(b mailbox) error {
	name := nextName()
	fd, err := unix.Openat(b.tmp, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, message)
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Renameat(b.tmp, name, b.new, name)
}

// unnamed puts a message into new/ through an unnamed file.
func unnamed(b mailbox) error {
	fd, err := unix.Openat(b.tmp, ".", unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, message); err != nil {
		return err
	}
	return unix.Linkat(fd, "", b.new, nextName(), unix.AT_EMPTY_PATH)
}

// threadCPU returns the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// fileCost times chunks of each way in turns and prints the medians of
// the CPU time per delivery.
func fileCost(boxes []mailbox, chunks, per int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ways := []struct {
		name string
		put  func(mailbox) error
	}{{"named file, rename into new/", named}, {"unnamed file, linkat into new/", unnamed}}
	cost := make([][]time.Duration, len(ways))
	n := 0
	for range chunks {
		for w, way := range ways {
			start := threadCPU()
			for range per {
				n++
				if err := way.put(boxes[n%len(boxes)]); err != nil {
					return fmt.Errorf("%s: %w", way.name, err)
				}
			}
			cost[w] = append(cost[w], (threadCPU()-start)/time.Duration(per))
		}
	}
	fmt.Printf("CPU per 2 KiB delivery, %d chunks of %d in turns: median [p25-p75]\n", chunks, per)
	for w, way := range ways {
		c := cost[w]
		slices.Sort(c)
		fmt.Printf("  %-32s %6.1f µs [%.1f-%.1f]\n", way.name, micros(c[len(c)/2]), micros(c[len(c)/4]), micros(c[3*len(c)/4]))
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// flushLatency times fsyncs of new files, alone and 16 at once, and of a
// directory after a rename into it.
func flushLatency(boxes []mailbox, n int) error {
	alone, together, dirs := make([]time.Duration, 0, n), make([]time.Duration, 0, 16*n), make([]time.Duration, 0, n)
	var mu sync.Mutex
	for i := range n {
		d, err := fsyncNew(boxes[i%len(boxes)])
		if err != nil {
			return err
		}
		alone = append(alone, d)
		b := boxes[(i+1)%len(boxes)]
		if err := named(b); err != nil {
			return err
		}
		start := time.Now()
		if err := unix.Fsync(b.new); err != nil {
			return err
		}
		dirs = append(dirs, time.Since(start))
	}
	for i := range n / 16 {
		var wg sync.WaitGroup
		var failed error
		for g := range 16 {
			wg.Go(func() {
				d, err := fsyncNew(boxes[(16*i+g)%len(boxes)])
				mu.Lock()
				defer mu.Unlock()
				together = append(together, d)
				if err != nil {
					failed = err
				}
			})
		}
		wg.Wait()
		if failed != nil {
			return failed
		}
	}
	fmt.Printf("flush latency: p50 / p90\n")
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{
		{"fsync of a new 2 KiB file, alone", alone},
		{"the same, 16 goroutines at once", together},
		{"fsync of new/ after a rename", dirs},
	} {
		slices.Sort(r.d)
		fmt.Printf("  %-36s %.2f / %.2f ms\n", r.name, millis(r.d[len(r.d)/2]), millis(r.d[len(r.d)*9/10]))
	}
	return nil
}

// fsyncNew writes a new 2 KiB file in b's tmp/ and times its fsync.
func fsyncNew(b mailbox) (time.Duration, error) {
	fd, err := unix.Openat(b.tmp, nextName(), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, message); err != nil {
		return 0, err
	}
	start := time.Now()
	err = unix.Fsync(fd)
	return time.Since(start), err
}

func millis(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
