package smtpd

import (
	"errors"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Unnamed files (O_TMPFILE, Linux 3.11).
//
// A message is written into a file that has no name, made in tmp/ of its
// first mailbox, and linked into each mailbox's new/ once complete, with
// linkat(2). The file appears in new/ whole and at once, as a rename from
// tmp/ would make it; but there is no entry in tmp/ to make, rename or
// clean up, which saves the file system work on every message, and a
// message that is given up (or a crash) leaves nothing in any tmp/: the
// file system frees it when it is closed, or after a crash at the next
// mount or file-system check.
// File systems without O_TMPFILE make the delivery fall back to a named
// file in tmp/ (maildir.noUnnamed).

// createUnnamed creates an unnamed file in tmp/, for reading and writing.
// A file system that cannot make one gives an error wrapping
// errors.ErrUnsupported.
func (mb *mailbox) createUnnamed() (*os.File, error) {
	var f *os.File
	err := inDir(mb.tmp, func(dir int) error {
		fd, err := unix.Openat(dir, ".", unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
		if err == unix.EPERM && removed(dir) {
			err = unix.ENOENT // as creating a named file there says
		}
		switch {
		case err == unix.EOPNOTSUPP || err == unix.EISDIR || err == unix.EINVAL:
			// EISDIR and EINVAL: a kernel that does not know the flag.
			return &os.PathError{Op: "create", Path: mb.name + "/tmp", Err: errors.ErrUnsupported}
		case err != nil:
			return &os.PathError{Op: "create", Path: mb.name + "/tmp", Err: err}
		}
		f = os.NewFile(uintptr(fd), mb.name+"/tmp/(unnamed)")
		return nil
	})
	return f, err
}

// removed reports whether the directory dir has been removed: ext4 refuses
// an unnamed file there with EPERM.
func removed(dir int) bool {
	var st unix.Stat_t
	return unix.Fstat(dir, &st) == nil && st.Nlink == 0
}

// linkThroughProc is set once linkat with AT_EMPTY_PATH was refused and the
// /proc/self/fd path worked: before Linux 6.10 the first needs the
// CAP_DAC_READ_SEARCH capability.
var linkThroughProc atomic.Bool

// linkUnnamed gives the unnamed file f the name name in new/.
func (mb *mailbox) linkUnnamed(f *os.File, name string) error {
	err := inDir(f, func(fd int) error {
		return inDir(mb.new, func(dir int) error {
			if !linkThroughProc.Load() {
				err := unix.Linkat(fd, "", dir, name, unix.AT_EMPTY_PATH)
				if err != unix.ENOENT {
					return err
				}
			}
			// ENOENT is also what a removed new/ gives: then this fails
			// the same way, and the flag stays as it is.
			err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dir, name, unix.AT_SYMLINK_FOLLOW)
			if err == nil {
				linkThroughProc.Store(true)
			}
			return err
		})
	})
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: mb.name + "/new/" + name, Err: err}
	}
	return nil
}
