//go:build !unix

package smtpd

import "io/fs"

// oNoFollow is 0 where open has no O_NOFOLLOW: links are followed.
const oNoFollow = 0

// writableByOthers cannot tell from permission bits here (Windows has
// ACLs): it reports false.
func writableByOthers(fs.FileInfo) bool { return false }
