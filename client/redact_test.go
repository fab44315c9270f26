package client

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestTranscriptRedaction: what a Client sends during an AUTH exchange
// shows as <redacted> in its transcript, and only that.
func TestTranscriptRedaction(t *testing.T) {
	var tr bytes.Buffer
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := NewClient(a)
	c.Transcript = &tr
	go func() { // a server that reads everything
		buf := make([]byte, 4096)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	steps := []func(){
		func() { c.Send("EHLO c") },
		func() { c.record("S: 250 ok") },
		func() { c.Send("AUTH PLAIN c2VjcmV0") },
		func() { c.record("S: 535 5.7.8 no") },
		func() { c.Send("AUTH LOGIN") },
		func() { c.record("S: 334 VXNlcm5hbWU6") },
		func() { c.Send("YWxpY2U=") },
		func() { c.record("S: 334 UGFzc3dvcmQ6") },
		func() { c.SendRaw([]byte("c2VjcmV0\r\n")) },
		func() { c.record("S: 235 2.7.0 ok") },
		func() { c.SendRaw([]byte("MAIL FROM:<a@b>\r\nauth plain c2VjcmV0\r\n")) },
	}
	for _, step := range steps {
		step()
	}
	want := strings.Join([]string{
		"C: EHLO c",
		"S: 250 ok",
		"C: AUTH PLAIN <redacted>",
		"S: 535 5.7.8 no",
		"C: AUTH LOGIN",
		"S: 334 VXNlcm5hbWU6",
		"C: <redacted>",
		"S: 334 UGFzc3dvcmQ6",
		`R: "<redacted>\r\n"`,
		"S: 235 2.7.0 ok",
		`R: "MAIL FROM:<a@b>\r\nauth plain <redacted>\r\n"`,
	}, "\n") + "\n"
	if got := tr.String(); got != want {
		t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseDialogueTLS(t *testing.T) {
	d, err := ParseDialogue(strings.NewReader("S: ^220\nC: STARTTLS\nS: ^220\nTLS\nC: EHLO c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.steps) != 5 || d.steps[3].kind != "TLS" {
		t.Errorf("steps = %+v", d.steps)
	}
}
