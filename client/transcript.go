package client

import (
	"bytes"
	"io"
	"strconv"
	"sync"

	"github.com/tpe-protos/smtpd/internal/palette"
)

// ColorTranscript returns a writer to use as Client.Transcript that colors
// each line as the server's session trace does: what the client sends ("C:"
// and "R:" lines) in one color, replies ("S:" lines) by class, other notes
// dimmed. With on false the lines pass through unchanged.
func ColorTranscript(w io.Writer, on bool) io.Writer {
	return &colorTranscript{w: w, pal: palette.New(on)}
}

type colorTranscript struct {
	w   io.Writer
	pal *palette.Palette

	mu      sync.Mutex
	partial []byte // a line not yet ended
}

func (t *colorTranscript) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(t.partial[:i])
		t.partial = t.partial[i+1:]
		if _, err := io.WriteString(t.w, t.color(line)+"\n"); err != nil {
			return len(p), err
		}
	}
}

// color colors one transcript line by its prefix.
func (t *colorTranscript) color(line string) string {
	switch {
	case len(line) >= 6 && line[:3] == "S: ":
		code, err := strconv.Atoi(line[3:6])
		if err != nil {
			return line
		}
		return t.pal.ForReply(code).Sprint(line)
	case len(line) >= 3 && (line[:3] == "C: " || line[:3] == "R: " || line == "C:"):
		return t.pal.Client.Sprint(line)
	}
	return t.pal.Event.Sprint(line)
}
