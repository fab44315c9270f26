package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// keySize is the size of a key smtpd creates: 256 bits.
const keySize = 32

// loadOrCreateKey reads the management key from name (hex), creating the
// file with a new random key, readable by its owner only, when it does not
// exist. Two servers starting at once on one directory agree on the key:
// the file is created with O_EXCL, and the loser reads the winner's.
func loadOrCreateKey(name string) ([]byte, error) {
	key := make([]byte, keySize)
	rand.Read(key)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKey(name)
	}
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(key))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nil, err
	}
	return key, nil
}

// readKey reads a hex management key of at least 16 bytes from name.
func readKey(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
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
