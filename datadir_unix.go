//go:build unix

package smtpd

import (
	"io/fs"
	"syscall"
)

// oNoFollow makes opening a symbolic link fail: the server's own files in
// the data directory are never opened through a link someone planted.
const oNoFollow = syscall.O_NOFOLLOW

// writableByOthers reports whether users other than the owner may create,
// rename and delete entries in the directory fi describes.
func writableByOthers(fi fs.FileInfo) bool { return fi.Mode().Perm()&0o022 != 0 }
