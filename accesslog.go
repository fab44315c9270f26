package smtpd

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// accessLog is DIR/access.log: one JSON object per line for every accepted
// message, the machine-readable successor of the original project's plain
// text report.
//
// The file is opened at the first message, not at start: a server that
// receives nothing (many test servers) creates nothing.
type accessLog struct {
	name string
	mu   sync.Mutex
	f    *os.File
}

// accessEntry is one line of the access log.
type accessEntry struct {
	// Time is when the server answered 250, UTC, in milliseconds
	// (accessTimeFormat).
	Time   string   `json:"time"`
	ID     string   `json:"id"`
	Client string   `json:"client"`
	Helo   string   `json:"helo"`
	From   string   `json:"from"`
	To     []string `json:"to"`
	Size   int64    `json:"size"`
	// TLS is the TLS version ("TLS 1.3") when the message came over TLS.
	TLS string `json:"tls,omitempty"`
	// User is the user the client authenticated as.
	User string `json:"user,omitempty"`
}

func newAccessLog(name string) *accessLog { return &accessLog{name: name} }

// accessTimeFormat is RFC 3339 with milliseconds, always three digits.
const accessTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// write appends the line of m, accepted at time at, with a single write, so
// that lines from concurrent sessions (and other processes appending) never
// interleave.
func (a *accessLog) write(m *Message, at time.Time) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep <, > and & readable
	err := enc.Encode(accessEntry{
		Time:   at.UTC().Format(accessTimeFormat),
		ID:     m.ID,
		Client: m.RemoteAddr.String(),
		Helo:   m.Helo,
		From:   m.From,
		To:     m.To,
		Size:   m.Size,
		TLS:    tlsVersion(m.TLS),
		User:   m.AuthUser,
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		if a.f, err = openNoFollow(a.name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return err
		}
	}
	_, err = a.f.Write(b.Bytes())
	return err
}

// openNoFollow opens a file of the data directory, but not through a
// symbolic link: one planted there (by anyone who can write to the
// directory) would have the server append its log to a file of the
// link's choosing.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|oNoFollow, perm)
	if err != nil {
		if fi, lerr := os.Lstat(name); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symbolic link: not followed", name)
		}
	}
	return f, err
}

func tlsVersion(st *tls.ConnectionState) string {
	if st == nil {
		return ""
	}
	return tls.VersionName(st.Version)
}

func (a *accessLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
