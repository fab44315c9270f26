package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// recordSyncs replaces syncDir for the test: each call records the
// directory and what name held at that moment.
func recordSyncs(t *testing.T, name string) *[]string {
	t.Helper()
	var seen []string
	orig := syncDir
	syncDir = func(dir string) error {
		data, _ := os.ReadFile(name)
		seen = append(seen, dir+": "+string(data))
		return orig(dir)
	}
	t.Cleanup(func() { syncDir = orig })
	return &seen
}

// onlyFiles fails unless dir holds exactly the given names: no temporary
// file is left behind.
func onlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s holds %q, want %q", dir, got, want)
		}
	}
}

// TestWrite: the file is replaced whole with its permissions, no temporary
// file is left, and the directory is synced once the new content is in
// place.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state")
	syncs := recordSyncs(t, name)
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{
		{"first\n", 0o600},
		{"second, longer\n", 0o644},
		{"", 0o600},
	} {
		if err := Write(name, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != tc.data {
			t.Errorf("after Write(%q): file holds %q, %v", tc.data, got, err)
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm != tc.perm {
			t.Errorf("after Write(%q): mode %v, want %v", tc.data, perm, tc.perm)
		}
		onlyFiles(t, dir, "state")
		if last := (*syncs)[len(*syncs)-1]; last != dir+": "+tc.data {
			t.Errorf("the directory was synced with %q, want it synced after the rename, holding %q", last, tc.data)
		}
	}
	if len(*syncs) != 3 {
		t.Errorf("%d directory syncs for 3 writes", len(*syncs))
	}
}

// TestWriteFails: when the file cannot be put in place, Write says so,
// what was there stays, and no temporary file is left.
func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "taken")
	if err := os.MkdirAll(filepath.Join(name, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(name, []byte("data"), 0o600); err == nil {
		t.Fatal("Write over a directory that is not empty succeeded")
	}
	if fi, err := os.Stat(filepath.Join(name, "inside")); err != nil || !fi.IsDir() {
		t.Errorf("the directory in the way was changed: %v", err)
	}
	onlyFiles(t, dir, "taken")
}

// TestWriteSyncFails: a directory that cannot be synced is an error, not
// a silent success.
func TestWriteSyncFails(t *testing.T) {
	broken := errors.New("disk gone")
	orig := syncDir
	syncDir = func(string) error { return broken }
	t.Cleanup(func() { syncDir = orig })
	if err := Write(filepath.Join(t.TempDir(), "state"), []byte("x"), 0o600); !errors.Is(err, broken) {
		t.Errorf("Write = %v, want %v", err, broken)
	}
}

// TestCreate: the file is created whole and synced into its directory; a
// second Create finds it there, says so (fs.ErrExist) and leaves it as it
// is.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "key")
	syncs := recordSyncs(t, name)
	if err := Create(name, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(*syncs) != 1 || (*syncs)[0] != dir+": first" {
		t.Errorf("directory syncs %q, want one after the file is in place", *syncs)
	}
	err := Create(name, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(name); string(got) != "first" {
		t.Errorf("file holds %q after the second Create, want %q", got, "first")
	}
	onlyFiles(t, dir, "key")
}
