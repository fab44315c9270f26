//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package smtpd

import (
	"os"
	"path"
)

// The file operations of a delivery where the *at system calls are not at
// hand: paths below the os.Root, walked by it each time.

func (mb *mailbox) createTmp(name string) (*os.File, error) {
	return mb.root.OpenFile(path.Join(mb.name, "tmp", name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

func (mb *mailbox) moveToNew(name string) error {
	return mb.root.Rename(path.Join(mb.name, "tmp", name), path.Join(mb.name, "new", name))
}

func (mb *mailbox) removeTmp(name string) error {
	return mb.root.Remove(path.Join(mb.name, "tmp", name))
}

func (mb *mailbox) removeNew(name string) error {
	return mb.root.Remove(path.Join(mb.name, "new", name))
}
