package cli

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestLoadOrCreateKey: a missing key file is created with 32 random
// octets in hex, mode 0600; an existing one is read, never replaced.
func TestLoadOrCreateKey(t *testing.T) {
	name := filepath.Join(t.TempDir(), "metrics.key")
	key, err := loadOrCreateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Errorf("new key has %d octets, want 32", len(key))
	}
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(key) + "\n"; string(data) != want {
		t.Errorf("key file holds %q, want %q", data, want)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %v, want 0600", perm)
	}
	again, err := loadOrCreateKey(name)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second loadOrCreateKey = %x, %v; want the first key %x", again, err, key)
	}
	other, err := loadOrCreateKey(filepath.Join(t.TempDir(), "metrics.key"))
	if err != nil || bytes.Equal(other, key) {
		t.Errorf("a key in another directory = %x, %v; want a different key", other, err)
	}
}

// TestLoadOrCreateKeyConcurrent: smtpd processes starting at once on one
// data directory must all start, with the same key (key.go promises it:
// "the loser reads the winner's"). The file is created with O_EXCL and
// written afterwards, so a loser can read it still empty.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	const rounds, starters = 50, 4
	failed := 0
	for range rounds {
		name := filepath.Join(t.TempDir(), "metrics.key")
		keys := make([][]byte, starters)
		errs := make([]error, starters)
		var wg sync.WaitGroup
		for i := range starters {
			wg.Go(func() { keys[i], errs[i] = loadOrCreateKey(name) })
		}
		wg.Wait()
		for i := range starters {
			if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
				failed++
				if failed == 1 {
					t.Logf("first failure: starter %d: key %x, err %v; starter 0: key %x, err %v", i, keys[i], errs[i], keys[0], errs[0])
				}
				break
			}
		}
	}
	if failed > 0 {
		t.Errorf("in %d of %d rounds, %d concurrent loadOrCreateKey calls did not all return the same key", failed, rounds, starters)
	}
}

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		wantErr       string // "" for success
	}{
		{"32 octets", strings.Repeat("ab", 32) + "\n", ""},
		{"16 octets, upper case, CRLF and spaces", "  " + strings.Repeat("AB", 16) + "\r\n\n", ""},
		{"15 octets", strings.Repeat("ab", 15), "key of 15 bytes"},
		{"empty", "", "key of 0 bytes"},
		{"odd digits", strings.Repeat("a", 33), "not a hex key"},
		{"not hex", "hello, world, this is not hex", "not a hex key"},
		{"two lines", strings.Repeat("ab", 16) + "\n" + strings.Repeat("cd", 16), "not a hex key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(name, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := readKey(name)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("readKey: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("readKey error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := readKey(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("readKey of a missing file succeeded")
	}
}

// TestReadKeyMode: a key file that users other than its owner may read or
// write is refused, in one line that says how to fix it (as ssh refuses
// such a private key); the owner's alone is fine.
func TestReadKeyMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o620, false},
		{0o602, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "metrics.key")
			if err := os.WriteFile(name, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(name, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := readKey(name)
			switch {
			case tc.ok && err != nil:
				t.Errorf("readKey: %v", err)
			case !tc.ok && err == nil:
				t.Errorf("readKey accepted a key file of mode %v", tc.mode)
			case !tc.ok:
				want := fmt.Sprintf("%s: permissions %#o are too open: the key must be for its owner only (chmod 600 %s)", name, tc.mode, name)
				if err.Error() != want {
					t.Errorf("readKey error:\n%s\nwant\n%s", err, want)
				}
			}
		})
	}
}
