package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/tpe-protos/smtpd"
)

// dataDirEnv names the environment variable that gives smtpd and
// metrics_client their data directory when -d is not given. Set once in a
// shell, it lets metrics_client find the server's key from any directory.
const dataDirEnv = "SMTPD_DATA"

// defaultDataDir is the default of -d: $SMTPD_DATA, or smtpd-data.
func defaultDataDir() string {
	if dir := os.Getenv(dataDirEnv); dir != "" {
		return dir
	}
	return smtpd.DefaultDataDir
}

// keyError says what to do about a key file that metrics_client cannot
// read: a missing one most often means that it runs in another directory
// than the server, whose data directory it then does not see.
func keyError(err error, keyGiven, dirGiven bool) error {
	switch {
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("key: %w", err)
	case keyGiven:
		return fmt.Errorf("key: %w: -key names the server's key file, DIR/metrics.key, DIR being smtpd's -d", err)
	case dirGiven:
		return fmt.Errorf("key: %w: is DIR of -d the server's data directory (smtpd's -d)? Or give its key file with -key FILE", err)
	}
	return fmt.Errorf("key: %w: is smtpd running in another directory? Give its data directory with -d DIR "+
		"(or set %s=DIR for both commands), or its key file with -key FILE", err, dataDirEnv)
}
