// Package atomicfile writes small files whole or not at all: the data goes
// to a temporary file in the same directory, which is synced and then
// renamed (or linked) into place, and the directory is synced too, so that
// after a crash the name holds either the old content or the new one, never
// a mix, an empty file or a rename that was lost. This is the discipline of
// chasquid's safeio and of Maildir delivery.
package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
)

// Write replaces the file name with data, with permissions perm.
func Write(name string, data []byte, perm os.FileMode) error {
	return place(name, data, perm, os.Rename)
}

// Create is Write for a file that must not exist yet: if name exists (say
// another process created it first) it returns an error that wraps
// fs.ErrExist, and name is left as it is.
func Create(name string, data []byte, perm os.FileMode) error {
	return place(name, data, perm, os.Link)
}

// place writes data to a temporary file beside name and puts it in place
// with put (os.Rename or os.Link).
func place(name string, data []byte, perm os.FileMode, put func(tmp, name string) error) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a rename, nothing to remove; after a link, the temporary name
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := put(f.Name(), name); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir flushes the directory dir, so that a name just put in it
// survives a crash (fsync of the file alone does not make its directory
// entry durable). A variable, for tests.
var syncDir = func(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // a directory cannot be opened for syncing there
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
