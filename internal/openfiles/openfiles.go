// Package openfiles says how many files an smtpd server holds open at
// most, so that the smtpd command can fit its sessions under the process's
// open-file limit, and the server's tests can hold the server to it.
package openfiles

const (
	// PerSession is what one session holds: its connection and, while
	// a message is received and committed, that message's file, however
	// many recipients it has (maildir.go).
	PerSession = 2

	// PerFilterRun is what a session holds besides while a content
	// filter runs: the spool file the filter reads, the server's ends of
	// the filter's output and error pipes, the process's handle (a pidfd
	// on Linux), and while it starts, the child's ends of the pipes and
	// os/exec's own pipe.
	PerFilterRun = 8

	// Mailboxes is how many mailboxes the Maildir store keeps open at
	// most, with two directories each: the sessions take them one at a
	// time, for one step of a delivery each.
	Mailboxes = 256

	// Copies is how many copies of a message, where a hard link is not
	// possible, are made at once, each an open file.
	Copies = 8

	// Lingering is how many connections of ended sessions stay open at
	// most, for a second, while the server reads what their clients still
	// send after its last reply (hangup.go).
	Lingering = 128

	// Spare is the rest: the listeners, the access log, the state file,
	// the Maildir root, the runtime's own.
	Spare = 64
)

// Server returns the most files a server with that many sessions holds,
// with or without a content filter.
func Server(sessions int, filter bool) int {
	per := PerSession
	if filter {
		per += PerFilterRun
	}
	return sessions*per + 2*Mailboxes + Copies + Lingering + Spare
}

// SessionsWithin returns the most sessions whose files fit under limit,
// with or without a content filter; 0 if none do.
func SessionsWithin(limit int, filter bool) int {
	per := PerSession
	if filter {
		per += PerFilterRun
	}
	return max(0, (limit-Server(0, filter))/per)
}
