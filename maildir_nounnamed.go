//go:build !linux

package smtpd

import (
	"errors"
	"os"
)

// Unnamed files are Linux's (see maildir_linux.go); elsewhere a message is
// written into a named file in tmp/ and renamed into new/.

func (mb *mailbox) createUnnamed() (*os.File, error) { return nil, errors.ErrUnsupported }

func (mb *mailbox) linkUnnamed(*os.File, string) error { return errors.ErrUnsupported }
