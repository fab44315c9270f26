//go:build unix

package cli

import "syscall"

// openFileLimit returns the process's open-file limit (the soft one, which
// Go raises to the hard one at start), or 0 if it cannot say.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	return rl.Cur
}
