//go:build !race

package smtpd_test

// raceEnabled: the race detector is on, and goroutine stacks are larger.
const raceEnabled = false
