package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/tpe-protos/smtpd/internal/atomicfile"
)

// keySize is the size of a key smtpd creates: 256 bits.
const keySize = 32

// loadOrCreateKey reads the management key from name (hex), creating the
// file with a new random key, readable by its owner only, when it does not
// exist. The file appears whole or not at all: it is written under a
// temporary name and linked into place, so two servers starting at once on
// one directory agree on the key, and neither reads a half-written file.
func loadOrCreateKey(name string) ([]byte, error) {
	if key, err := readKey(name); !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key := make([]byte, keySize)
	rand.Read(key)
	err := atomicfile.Create(name, []byte(hex.EncodeToString(key)+"\n"), 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKey(name) // another server was first
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// readKey reads a hex management key of at least 16 bytes from name. As
// ssh does with a private key, it refuses a file that users other than its
// owner may read or write: the key would be theirs too.
func readKey(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%s: permissions %#o are too open: the key must be for its owner only (chmod 600 %s)", name, perm, name)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: not a hex key: %w", name, err)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("%s: key of %d bytes; at least 16 are needed", name, len(key))
	}
	return key, nil
}
