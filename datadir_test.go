package smtpd_test

import (
	"bytes"
	"log/slog"
	"net/smtp"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tpe-protos/smtpd"
	"github.com/tpe-protos/smtpd/smtpdtest"
)

// The data directory is not trusted blindly: what others could plant in it
// is not followed, and a directory they can write to is reported.

// TestAccessLogNotThroughLink: an access.log that is a symbolic link is
// not followed (the previous version appended its log to the link's
// target); the message is still accepted, and the failure logged.
func TestAccessLogNotThroughLink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no O_NOFOLLOW")
	}
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "access.log")); err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	ts := smtpdtest.NewServer(t, smtpdtest.Config(smtpd.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))}))
	if err := smtp.SendMail(ts.Addr, nil, "bob@example.net", []string{"alice@example.org"}, []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious\n" {
		t.Errorf("the link's target now holds %q", got)
	}
	if !bytes.Contains(logs.bytes(), []byte("access.log is a symbolic link: not followed")) {
		t.Errorf("the refused link is not logged:\n%s", logs.bytes())
	}
	if n := len(ts.Messages()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestDataDirWritableByOthers: a data directory that other users can
// write to is reported at start; one of the owner's alone is not.
func TestDataDirWritableByOthers(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{
		{0o700, false},
		{0o755, false},
		{0o770, true},
		{0o777, true},
		{0o777 | os.ModeSticky, true}, // as /tmp: others can still plant new names
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			srv, err := smtpd.NewServer(smtpd.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			srv.Close()
			warned := strings.Contains(logs.String(), "level=WARN msg=\"smtpd: the data directory is writable by other users")
			if warned != tc.warn {
				t.Errorf("warned %v, want %v; logs:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}
