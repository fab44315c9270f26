package smtpd

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// haveSyncfs says that syncfs(2) is at hand: it writes back and commits
// every dirty file and directory of one file system in one call.
const haveSyncfs = true

// syncFileSystems calls syncfs once for each file system the files are on.
// Since Linux 5.8 syncfs reports writeback errors of the file system, as
// fsync does for its file.
func syncFileSystems(files []*os.File) error {
	done := make(map[uint64]bool)
	for _, f := range files {
		var st unix.Stat_t
		err := inDir(f, func(fd int) error {
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			if done[st.Dev] {
				return nil
			}
			done[st.Dev] = true
			return unix.Syncfs(fd)
		})
		if err != nil {
			return &os.PathError{Op: "syncfs", Path: f.Name(), Err: err}
		}
	}
	return nil
}

// syncFileSystem calls syncfs for the file system f is on.
func syncFileSystem(f *os.File) error {
	if err := inDir(f, unix.Syncfs); err != nil {
		return &os.PathError{Op: "syncfs", Path: f.Name(), Err: err}
	}
	return nil
}

// deviceOf returns the file system a file is on, from its FileInfo.
func deviceOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
