package smtpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/tpe-protos/smtpd/internal/atomicfile"
)

// counters are the server's running totals. Those that persist
// (connections, bytes, messages) start from the values of the state file.
type counters struct {
	connections atomic.Uint64 // every accepted connection, refused ones too
	sessions    atomic.Int64  // sessions open now
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	messages    atomic.Uint64 // messages accepted with 250
	rejected    atomic.Uint64 // messages refused after their data (552)
	failed      atomic.Uint64 // messages that could not be stored (451)
	bareLF      atomic.Uint64 // command lines ended by a bare LF

	commands [len(countedVerbs) + 1]atomic.Uint64 // by verb; the last counts the others
	replies  [400]atomic.Uint64                   // by reply code, 200 to 599
}

// countedVerbs are the verbs counted one by one; any other counts as
// "other".
var countedVerbs = [...]string{"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "HELP", "EXPN", "STARTTLS", "AUTH", "BDAT", "LHLO"}

func (c *counters) countCommand(verb string) {
	for i, v := range countedVerbs {
		if v == verb {
			c.commands[i].Add(1)
			return
		}
	}
	c.commands[len(countedVerbs)].Add(1)
}

func (c *counters) countReply(code int) {
	if code >= 200 && code < 600 {
		c.replies[code-200].Add(1)
	}
}

// Stats is a snapshot of a server's counters. The settings that can change
// while the server runs are in RuntimeSettings.
type Stats struct {
	// Connections counts every connection accepted, including those
	// refused for MaxConns. It persists across restarts when
	// Config.StateFile is set, as do BytesIn, BytesOut and Messages.
	Connections uint64
	// Sessions is the number of sessions open now.
	Sessions int64
	// BytesIn and BytesOut count the bytes received and sent by all
	// sessions.
	BytesIn, BytesOut uint64
	// Messages counts the messages accepted (250 after DATA), Rejected
	// those refused after their data was read (552), Failed those that
	// could not be stored (451).
	Messages, Rejected, Failed uint64
	// CommitBatches counts the flushes to disk that made accepted
	// messages durable: concurrent sessions' messages share one (group
	// commit), so Messages / CommitBatches is the mean batch size. It
	// starts at zero with each process.
	CommitBatches uint64
	// BareLF counts the command lines that ended in a bare LF instead of
	// CRLF (a client such as nc without -C).
	BareLF uint64
	// Commands counts the commands received by verb ("MAIL"); unknown
	// verbs count as "other".
	Commands map[string]uint64
	// Replies counts the replies sent by code.
	Replies map[int]uint64
	// Uptime is the time since the server started.
	Uptime time.Duration
}

// Stats returns a snapshot of the server's counters.
func (srv *Server) Stats() Stats {
	c := &srv.stats
	st := Stats{
		Connections: c.connections.Load(),
		Sessions:    c.sessions.Load(),
		BytesIn:     c.bytesIn.Load(),
		BytesOut:    c.bytesOut.Load(),
		Messages:    c.messages.Load(),
		Rejected:    c.rejected.Load(),
		Failed:      c.failed.Load(),
		BareLF:      c.bareLF.Load(),
		Commands:    make(map[string]uint64),
		Replies:     make(map[int]uint64),
		Uptime:      time.Since(srv.started),
	}
	if srv.store != nil { // nil in a Server not made by NewServer
		st.CommitBatches = srv.store.group.batches.Load()
	}
	for i := range c.commands {
		name := "other"
		if i < len(countedVerbs) {
			name = countedVerbs[i]
		}
		if n := c.commands[i].Load(); n > 0 {
			st.Commands[name] = n
		}
	}
	for i := range c.replies {
		if n := c.replies[i].Load(); n > 0 {
			st.Replies[200+i] = n
		}
	}
	return st
}

// savedState is the JSON form of the state file.
type savedState struct {
	Connections uint64    `json:"connections"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
	Messages    uint64    `json:"messages"`
	Saved       time.Time `json:"saved"`
}

// stateSaveInterval is how often the counters are saved while the server
// runs; they are saved at Shutdown and Close too.
const stateSaveInterval = 10 * time.Second

// loadState starts the persistent counters from the state file. A missing
// file is a first start. A corrupt one is reported, moved aside to
// <file>.corrupt for inspection, and the counters start from zero: losing
// statistics must not keep a mail server down.
func (srv *Server) loadState() {
	name := srv.set.stateFile
	if name == "" {
		return
	}
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var st savedState
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil {
		srv.log.Error("smtpd: state file unreadable; counters start from zero", "file", name, "err", err)
		if err := os.Rename(name, name+".corrupt"); err != nil {
			// It stays where it is, and the next save replaces it.
			srv.log.Error("smtpd: state file not moved aside", "file", name, "err", err)
		}
		return
	}
	srv.stats.connections.Store(st.Connections)
	srv.stats.bytesIn.Store(st.BytesIn)
	srv.stats.bytesOut.Store(st.BytesOut)
	srv.stats.messages.Store(st.Messages)
}

// saveState writes the persistent counters to the state file atomically: a
// temporary file in the same directory, synced, renamed over the old one,
// and the directory synced.
func (srv *Server) saveState() error {
	name := srv.set.stateFile
	if name == "" {
		return nil
	}
	data, err := json.Marshal(savedState{
		Connections: srv.stats.connections.Load(),
		BytesIn:     srv.stats.bytesIn.Load(),
		BytesOut:    srv.stats.bytesOut.Load(),
		Messages:    srv.stats.messages.Load(),
		Saved:       time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(name, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("smtpd: saving counters: %w", err)
	}
	return nil
}

// startStateSaver starts saving the counters every stateSaveInterval, once,
// when the server begins serving; stopStateSaver stops it.
func (srv *Server) startStateSaver() {
	if srv.set.stateFile == "" {
		return
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.saverStop != nil || srv.closed {
		return
	}
	srv.saverStop = make(chan struct{})
	srv.saverDone = make(chan struct{})
	go func() {
		defer close(srv.saverDone)
		tick := time.NewTicker(stateSaveInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := srv.saveState(); err != nil {
					srv.log.Error(err.Error())
				}
			case <-srv.saverStop:
				return
			}
		}
	}()
}

// stopStateSaver stops the periodic saving and saves one last time.
func (srv *Server) stopStateSaver() {
	srv.mu.Lock()
	stop, done := srv.saverStop, srv.saverDone
	srv.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	if err := srv.saveState(); err != nil {
		srv.log.Error(err.Error())
	}
}
