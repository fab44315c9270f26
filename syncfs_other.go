//go:build !linux

package smtpd

import (
	"errors"
	"io/fs"
	"os"
)

// haveSyncfs says that syncfs(2) is at hand; here it is not, and a batch's
// files are fsynced concurrently.
const haveSyncfs = false

// syncFileSystems and syncFileSystem are never called without syncfs.
func syncFileSystems([]*os.File) error { return errors.ErrUnsupported }
func syncFileSystem(*os.File) error    { return errors.ErrUnsupported }

// deviceOf is only needed with syncfs.
func deviceOf(fs.FileInfo) uint64 { return 0 }
