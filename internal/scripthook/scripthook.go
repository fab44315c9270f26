// Package scripthook lets a program that runs smtpscript scripts (the
// smtpcheck command) see each dialogue the smtp command plays: its
// transcript and how it ended, without parsing the script's log.
package scripthook

// Key is the testscript.Env.Values key under which a Setup function puts
// an Observer.
type Key struct{}

// A Dialogue is one play of the smtp command.
type Dialogue struct {
	Files      []string // the dialogue files, in the order played
	Transcript string   // what was said, as the command printed it
	Err        error    // nil, or why it failed (a *client.StepError for a step)
}

// An Observer is called after each dialogue.
type Observer func(Dialogue)
