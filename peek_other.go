//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package smtpd

// peekSocket cannot look at a socket here: the free early-talker check
// finds nothing, and only Config.GreetDelay catches early talkers.
func peekSocket(fd uintptr) bool { return false }
