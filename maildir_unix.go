//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package smtpd

import (
	"os"

	"golang.org/x/sys/unix"
)

// The file operations of a delivery, relative to a mailbox's open tmp/ and
// new/ directories. The names are the server's own unique names, never a
// path; O_NOFOLLOW keeps a planted symbolic link from being followed, and
// rename, link and unlink act on directory entries, never through a link.

// inDir runs op with the descriptor of dir, which stays valid meanwhile even
// if dir is closed by another goroutine.
func inDir(dir *os.File, op func(fd int) error) error {
	rc, err := dir.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = op(int(fd)) }); err != nil {
		return err
	}
	return opErr
}

// createTmp creates the file name in tmp/, which must not exist, for
// reading and writing.
func (mb *mailbox) createTmp(name string) (*os.File, error) {
	var f *os.File
	err := inDir(mb.tmp, func(dir int) error {
		fd, err := unix.Openat(dir, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return &os.PathError{Op: "create", Path: mb.name + "/tmp/" + name, Err: err}
		}
		f = os.NewFile(uintptr(fd), mb.name+"/tmp/"+name)
		return nil
	})
	return f, err
}

// moveToNew moves the file name from tmp/ into new/ (rename is atomic).
func (mb *mailbox) moveToNew(name string) error {
	return inDir(mb.tmp, func(tmp int) error {
		return inDir(mb.new, func(dst int) error {
			return unix.Renameat(tmp, name, dst, name)
		})
	})
}

func (mb *mailbox) removeTmp(name string) error {
	return inDir(mb.tmp, func(dir int) error { return unix.Unlinkat(dir, name, 0) })
}

func (mb *mailbox) removeNew(name string) error {
	return inDir(mb.new, func(dir int) error { return unix.Unlinkat(dir, name, 0) })
}
