package smtpd

import (
	"os"

	"golang.org/x/sys/unix"
)

// markTopDir sets FS_TOPDIR_FL (chattr +T) on dir: ext4 then spreads dir's
// subdirectories over its block groups (the Orlov allocator), and a file
// gets its inode in the block group of its directory.
//
// Why a mail store wants that: when ext4 allocates an inode it scans its
// directory's block group from the start and skips every inode freed in
// the last seconds (minutes while the inode table block is dirty). Where
// many messages were just deleted, as when a test suite removes its
// Maildirs or a reader empties a mailbox, each new message then costs a
// scan of thousands of inodes, and the server spends more CPU there than
// on everything else together. Spreading the mailboxes' directories over
// block groups makes such a neighbourhood rare. File systems without the
// flag ignore it or refuse it; either way nothing else changes.
func markTopDir(dir *os.File) {
	const fsTopDirFlag = 0x00020000 // FS_TOPDIR_FL in linux/fs.h
	inDir(dir, func(fd int) error {
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if err != nil || flags&fsTopDirFlag != 0 {
			return err
		}
		return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
	})
}
