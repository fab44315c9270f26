//go:build !linux

package smtpd

import "os"

// haveSyncfs says that syncfs(2) is at hand; here it is not, and a batch's
// files are fsynced one by one, concurrently.
const haveSyncfs = false

func syncFileSystems(files []*os.File) error { return syncConcurrently(files) }
