//go:build !linux

package smtpd

import "os"

// markTopDir is a placement hint for ext4 (see topdir_linux.go); other
// systems have no such hint.
func markTopDir(*os.File) {}
