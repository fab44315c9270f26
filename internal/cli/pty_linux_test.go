package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// terminal is a pseudo-terminal: a command writes to out as to a terminal,
// and output returns what it wrote.
type terminal struct {
	out    *os.File // the terminal side
	master *os.File
	read   chan []byte
}

// openTerminal opens a pseudo-terminal, closed with the test.
func openTerminal(t *testing.T) *terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	out, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	tty := &terminal{out: out, master: master, read: make(chan []byte, 1)}
	go func() {
		var b bytes.Buffer
		io.Copy(&b, master) // ends with EIO once out is closed
		tty.read <- b.Bytes()
	}()
	t.Cleanup(func() {
		out.Close()
		master.Close()
	})
	return tty
}

// output closes the terminal side and returns all that was written to it.
func (tty *terminal) output() string {
	tty.out.Close()
	return string(<-tty.read)
}
