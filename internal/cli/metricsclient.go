package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tpe-protos/smtpd"
)

// Exit status of metrics_client when the server did not answer.
const exitTimeout = 3

// MetricsClientMain runs the metrics_client command with the process's
// arguments.
func MetricsClientMain() int {
	return MetricsClient(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

type metricsClientFlags struct {
	host    string
	port    int
	keyFile string
	dataDir string
	json    bool
	timeout time.Duration
}

// MetricsClient runs the metrics_client command and returns its exit
// status: with a command, it sends it and prints the answer (SPEC §2); with
// none, it runs the interactive menu on stdin and stdout.
func MetricsClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("metrics_client", flag.ContinueOnError)
	var f metricsClientFlags
	fs.StringVar(&f.host, "H", "127.0.0.1", "management server `host`")
	fs.IntVar(&f.port, "M", 7030, "management server UDP `port`")
	fs.StringVar(&f.keyFile, "key", "", "key `file` (default DIR/metrics.key)")
	fs.StringVar(&f.dataDir, "d", smtpd.DefaultDataDir, "the server's data `directory`, where the key is")
	fs.BoolVar(&f.json, "json", false, "print the answer as JSON")
	fs.DurationVar(&f.timeout, "timeout", smtpd.DefaultMetricsTimeout, "wait for each of the 4 attempts")
	fs.Usage = func() {}
	if code, done := parseCommandLine(fs, args, stdout, stderr, "COMMAND [ARG]", commandHelp()); done {
		return code
	}
	if f.port < 1 || f.port > 65535 {
		return usageError(stderr, fs.Name(), fmt.Errorf("-M %d: not a port number", f.port))
	}
	if f.timeout <= 0 {
		return usageError(stderr, fs.Name(), fmt.Errorf("-timeout %v: must be positive", f.timeout))
	}
	var cmd smtpd.Command
	var arg uint64
	if fs.NArg() > 0 {
		var err error
		if cmd, arg, err = parseCommandArgs(fs.Args()); err != nil {
			return usageError(stderr, fs.Name(), err)
		}
	}
	if f.keyFile == "" {
		f.keyFile = filepath.Join(f.dataDir, "metrics.key")
	}
	key, err := readKey(f.keyFile)
	if err != nil {
		return usageError(stderr, fs.Name(), fmt.Errorf("key: %w", err))
	}
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	c, err := smtpd.DialMetrics(addr, key)
	if err != nil {
		return usageError(stderr, fs.Name(), err)
	}
	defer c.Close()
	c.Timeout = f.timeout
	if fs.NArg() == 0 {
		return runMenu(ctx, c, addr, stdin, stdout)
	}
	return runCommand(ctx, c, addr, cmd, arg, f.json, stdout, stderr)
}

// parseCommandArgs parses COMMAND [ARG].
func parseCommandArgs(args []string) (smtpd.Command, uint64, error) {
	cmd, err := smtpd.ParseCommand(args[0])
	if err != nil {
		return 0, 0, fmt.Errorf("unknown command %q", args[0])
	}
	switch {
	case cmd.TakesArgument() && len(args) != 2:
		return 0, 0, fmt.Errorf("%s takes one argument", cmd)
	case !cmd.TakesArgument() && len(args) != 1:
		return 0, 0, fmt.Errorf("%s takes no argument", cmd)
	case !cmd.TakesArgument():
		return cmd, 0, nil
	}
	arg, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %q is not a number of bytes", cmd, args[1])
	}
	return cmd, arg, nil
}

func commandHelp() string {
	var names []string
	for _, c := range smtpd.Commands() {
		name := c.String()
		if c.TakesArgument() {
			name += " N"
		}
		names = append(names, name)
	}
	return "Commands: " + strings.Join(names, ", ")
}

// answer is the JSON form of a result.
type answer struct {
	Command string  `json:"command"`
	Status  string  `json:"status"`
	Value   *uint64 `json:"value,omitempty"`
}

// runCommand sends one command and prints the answer: the value and exit
// status 0; the status name and 1; a timeout message and 3.
func runCommand(ctx context.Context, c *smtpd.MetricsClient, addr string, cmd smtpd.Command, arg uint64, asJSON bool, stdout, stderr io.Writer) int {
	value, err := c.Do(ctx, cmd, arg)
	var statusErr *smtpd.StatusError
	switch {
	case err == nil:
		if asJSON {
			printJSON(stdout, answer{Command: cmd.String(), Status: smtpd.StatusOK.String(), Value: &value})
		} else {
			fmt.Fprintln(stdout, value)
		}
		return exitOK
	case errors.As(err, &statusErr):
		if asJSON {
			printJSON(stdout, answer{Command: cmd.String(), Status: statusErr.Status.String()})
		} else {
			fmt.Fprintln(stderr, statusErr.Status)
		}
		return exitFailure
	case errors.Is(err, smtpd.ErrTimeout):
		fmt.Fprintf(stderr, "metrics_client: no answer from %s\n", addr)
		return exitTimeout
	}
	fmt.Fprintf(stderr, "metrics_client: %v\n", err)
	return exitFailure
}

func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}

// menuItems are the choices of the interactive menu, in the order of the
// protocol's commands, numbered from 1.
var menuItems = []string{
	smtpd.CmdHistoricalConnections: "Historical connections",
	smtpd.CmdConcurrentConnections: "Concurrent connections",
	smtpd.CmdBytesTransferred:      "Bytes transferred",
	smtpd.CmdVerboseOn:             "Turn verbose trace on",
	smtpd.CmdVerboseOff:            "Turn verbose trace off",
	smtpd.CmdVerboseStatus:         "Verbose trace status",
	smtpd.CmdMessages:              "Messages accepted",
	smtpd.CmdUptime:                "Uptime (seconds)",
	smtpd.CmdGetMaxSize:            "Maximum message size",
	smtpd.CmdSetMaxSize:            "Set maximum message size",
	smtpd.CmdFilterStatus:          "Content filter status",
	smtpd.CmdFilterOn:              "Turn content filter on",
	smtpd.CmdFilterOff:             "Turn content filter off",
}

// runMenu is the interactive menu of the original project: numbered
// choices, the answer, and "another request?". Any input is handled: a bad
// choice is asked again, and the end of input ends the menu (status 0).
func runMenu(ctx context.Context, c *smtpd.MetricsClient, addr string, stdin io.Reader, stdout io.Writer) int {
	in := &lineInput{r: bufio.NewReader(stdin)}
	fmt.Fprintf(stdout, "smtpd management client, server %s\n", addr)
	for {
		cmd, ok := menuChoice(in, stdout)
		if !ok {
			break
		}
		var arg uint64
		if cmd.TakesArgument() {
			if arg, ok = askNumber(in, stdout, "New maximum size in bytes: "); !ok {
				break
			}
		}
		fmt.Fprintln(stdout, describeAnswer(ctx, c, cmd, arg))
		if !askYesNo(in, stdout, "Do you want to make another request? (y/n) ") {
			break
		}
	}
	fmt.Fprintln(stdout, "Bye.")
	return exitOK
}

// menuChoice prints the menu and reads a choice until it is valid; ok is
// false at the end of input or on choice 0.
func menuChoice(in *lineInput, stdout io.Writer) (cmd smtpd.Command, ok bool) {
	fmt.Fprintln(stdout)
	for i, item := range menuItems {
		fmt.Fprintf(stdout, "%2d. %s\n", i+1, item)
	}
	fmt.Fprintln(stdout, " 0. Exit")
	for {
		n, ok := askNumber(in, stdout, fmt.Sprintf("Choose an option (0-%d): ", len(menuItems)))
		switch {
		case !ok || n == 0:
			return 0, false
		case n <= uint64(len(menuItems)):
			return smtpd.Command(n - 1), true
		}
		fmt.Fprintf(stdout, "There is no option %d.\n", n)
	}
}

// askNumber reads a non-negative number, asking again after anything else;
// ok is false at the end of input.
func askNumber(in *lineInput, stdout io.Writer, prompt string) (uint64, bool) {
	for {
		fmt.Fprint(stdout, prompt)
		line, ok := in.next()
		if !ok {
			fmt.Fprintln(stdout)
			return 0, false
		}
		text := strings.TrimSpace(line)
		n, err := strconv.ParseUint(text, 10, 64)
		if err == nil {
			return n, true
		}
		fmt.Fprintf(stdout, "%q is not a number.\n", truncate(text, 40))
	}
}

// askYesNo reads y or n (any case, also yes/no); the end of input is no.
func askYesNo(in *lineInput, stdout io.Writer, prompt string) bool {
	for {
		fmt.Fprint(stdout, prompt)
		line, ok := in.next()
		if !ok {
			fmt.Fprintln(stdout)
			return false
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return true
		case "n", "no":
			return false
		}
		fmt.Fprintln(stdout, "Please answer y or n.")
	}
}

// describeAnswer runs a command and says its result in a sentence.
func describeAnswer(ctx context.Context, c *smtpd.MetricsClient, cmd smtpd.Command, arg uint64) string {
	value, err := c.Do(ctx, cmd, arg)
	var statusErr *smtpd.StatusError
	switch {
	case errors.As(err, &statusErr):
		return "The server refused: " + statusErr.Status.String()
	case errors.Is(err, smtpd.ErrTimeout):
		return "The server did not answer."
	case err != nil:
		return "Error: " + err.Error()
	}
	return fmt.Sprintf("%s: %d", menuItems[cmd], value)
}

// lineInput reads the lines a person types, of any length: a line too long
// to be an answer is read to its end and kept only in part, so that it is a
// wrong answer rather than the end of input.
type lineInput struct {
	r *bufio.Reader
}

// maxAnswer is how much of a typed line is kept.
const maxAnswer = 256

// next returns the next line without its line ending; ok is false at the end
// of input.
func (in *lineInput) next() (line string, ok bool) {
	var kept []byte
	for {
		frag, err := in.r.ReadSlice('\n')
		if len(kept) < maxAnswer {
			kept = append(kept, frag[:min(len(frag), maxAnswer-len(kept))]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil && len(frag) == 0 && len(kept) == 0:
			return "", false
		}
		return strings.TrimRight(string(kept), "\r\n"), true
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
