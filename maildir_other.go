//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package smtpd

import (
	"os"
	"path"
)

// The file operations of a delivery where the *at system calls are not at
// hand: paths below the os.Root, walked by it each time.

func (mb *mailbox) createTmp(name string, flag int) (*os.File, error) {
	return mb.root.OpenFile(path.Join(mb.name, "tmp", name), flag|os.O_CREATE|os.O_EXCL, 0o600)
}

func (mb *mailbox) openTmp(name string) (*os.File, error) {
	return mb.root.Open(path.Join(mb.name, "tmp", name))
}

func (mb *mailbox) publish(name string) error {
	return mb.root.Rename(path.Join(mb.name, "tmp", name), path.Join(mb.name, "new", name))
}

func linkTmp(from, to *mailbox, name string) error {
	return from.root.Link(path.Join(from.name, "tmp", name), path.Join(to.name, "tmp", name))
}

func (mb *mailbox) removeTmp(name string) error {
	return mb.root.Remove(path.Join(mb.name, "tmp", name))
}

func (mb *mailbox) removeNew(name string) error {
	return mb.root.Remove(path.Join(mb.name, "new", name))
}
