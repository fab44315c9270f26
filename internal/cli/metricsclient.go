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

// MetricsClient runs the metrics_client command and returns its exit status:
// with a command, it sends it and prints the answer (docs/metrics-protocol.md
// §9); with none, it runs the interactive menu on stdin and stdout.
func MetricsClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("metrics_client", flag.ContinueOnError)
	var f metricsClientFlags
	fs.StringVar(&f.host, "H", "127.0.0.1", "management server `host`")
	fs.IntVar(&f.port, "M", 7030, "management server UDP `port`")
	fs.StringVar(&f.keyFile, "key", "", "key `file` (default DIR/metrics.key)")
	fs.StringVar(&f.dataDir, "d", defaultDataDir(), "the server's data `directory`, where the key is; $"+dataDirEnv+" sets the default")
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
	var watch watchFlags
	switch {
	case fs.Arg(0) == "watch":
		if code, done := watch.parse(fs.Args()[1:], stdout, stderr); done {
			return code
		}
	case fs.NArg() > 0:
		var err error
		if cmd, arg, err = parseCommandArgs(fs.Args()); err != nil {
			return usageError(stderr, fs.Name(), err)
		}
	}
	keyGiven := f.keyFile != ""
	if !keyGiven {
		f.keyFile = filepath.Join(f.dataDir, "metrics.key")
	}
	key, err := readKey(f.keyFile)
	if err != nil {
		return usageError(stderr, fs.Name(), keyError(err, keyGiven, isSet(fs, "d")))
	}
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	c, err := smtpd.DialMetrics(addr, key)
	if err != nil {
		return usageError(stderr, fs.Name(), err)
	}
	defer c.Close()
	c.Timeout = f.timeout
	m := &managed{c: c, addr: addr, keyFile: f.keyFile}
	switch {
	case fs.NArg() == 0:
		return runMenu(ctx, m, stdin, stdout)
	case watch.on:
		return runWatch(ctx, m, watch, stdout, stderr)
	}
	return runCommand(ctx, m, cmd, arg, f.json, stdout, stderr)
}

// managed is the server metrics_client talks to.
type managed struct {
	c       *smtpd.MetricsClient
	addr    string // host:port, for messages
	keyFile string // the key used, for messages
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
	switch {
	case strings.HasPrefix(args[1], "-"):
		return 0, 0, fmt.Errorf("%s %s: %s", cmd, args[1], negativeSize)
	case err != nil:
		return 0, 0, fmt.Errorf("%s: %q is not a number of bytes", cmd, args[1])
	}
	return cmd, arg, nil
}

// negativeSize says why a negative size is refused.
const negativeSize = "a size cannot be negative: give the largest message in bytes, 1 or more"

func commandHelp() string {
	var names []string
	for _, c := range smtpd.Commands() {
		name := c.String()
		if c.TakesArgument() {
			name += " N"
		}
		names = append(names, name)
	}
	names = append(names, "watch [-interval D] [-count N] (a live view of connections, bytes and messages)")
	return "Commands: " + strings.Join(names, ", ") + "\n" +
		"On a terminal a value comes with what it is (\"concurrent connections: 12\"); piped, it is printed alone.\n" +
		"-d defaults to $" + dataDirEnv + " when it is set, as smtpd's does: set it once for both."
}

// answer is the JSON form of a result.
type answer struct {
	Command string  `json:"command"`
	Status  string  `json:"status"`
	Value   *uint64 `json:"value,omitempty"`
}

// runCommand sends one command and prints the answer: the value and exit
// status 0; the status name (and what it means here) and 1; a timeout
// message and 3. The value is bare, as scripts want it, unless stdout is a
// terminal: a person is told what it is.
func runCommand(ctx context.Context, m *managed, cmd smtpd.Command, arg uint64, asJSON bool, stdout, stderr io.Writer) int {
	value, err := m.c.Do(ctx, cmd, arg)
	var statusErr *smtpd.StatusError
	switch {
	case err == nil:
		switch {
		case asJSON:
			printJSON(stdout, answer{Command: cmd.String(), Status: smtpd.StatusOK.String(), Value: &value})
		case isTerminal(stdout):
			fmt.Fprintln(stdout, describeValue(cmd, value))
		default:
			fmt.Fprintln(stdout, value)
		}
		return exitOK
	case errors.As(err, &statusErr):
		if asJSON {
			printJSON(stdout, answer{Command: cmd.String(), Status: statusErr.Status.String()})
		} else {
			fmt.Fprintln(stderr, m.explainStatus(statusErr))
		}
		return exitFailure
	case errors.Is(err, smtpd.ErrTimeout):
		fmt.Fprintf(stderr, "metrics_client: no answer from %s\n", m.addr)
		return exitTimeout
	}
	fmt.Fprintf(stderr, "metrics_client: %v\n", err)
	return exitFailure
}

// describeValue says what a command's value is, for a person.
func describeValue(cmd smtpd.Command, v uint64) string {
	onOff := "off"
	if v == 1 {
		onOff = "on"
	}
	switch cmd {
	case smtpd.CmdHistoricalConnections:
		return fmt.Sprintf("historical connections: %d", v)
	case smtpd.CmdConcurrentConnections:
		return fmt.Sprintf("concurrent connections: %d", v)
	case smtpd.CmdBytesTransferred:
		return fmt.Sprintf("bytes transferred: %d", v)
	case smtpd.CmdVerboseOn, smtpd.CmdVerboseOff, smtpd.CmdVerboseStatus:
		return "trace: " + onOff
	case smtpd.CmdMessages:
		return fmt.Sprintf("messages accepted: %d", v)
	case smtpd.CmdUptime:
		return fmt.Sprintf("uptime: %d seconds (%v)", v, time.Duration(min(v, 1<<32))*time.Second)
	case smtpd.CmdGetMaxSize, smtpd.CmdSetMaxSize:
		return fmt.Sprintf("maximum message size: %d bytes", v)
	case smtpd.CmdFilterStatus, smtpd.CmdFilterOn, smtpd.CmdFilterOff:
		return "content filter: " + onOff
	}
	return fmt.Sprintf("%s: %d", cmd, v)
}

// explainStatus returns the status name of a refusal, and what it most
// likely means for the command, so that the error teaches what to do.
func (m *managed) explainStatus(e *smtpd.StatusError) string {
	hint := ""
	switch {
	case e.Status == smtpd.StatusAuthFailed:
		hint = "wrong key? the server's key is DIR/metrics.key, DIR being its -d; this client used " + m.keyFile +
			" (or the two clocks are more than 30 s apart)"
	case e.Command == smtpd.CmdFilterOn && e.Status == smtpd.StatusUnexpectedError:
		hint = "the server has no content filter (start it with -filter)"
	case e.Command == smtpd.CmdSetMaxSize && e.Status == smtpd.StatusInvalidArgument:
		hint = "the size must be from 1 to 9223372036854775807 bytes"
	}
	if hint == "" {
		return e.Status.String()
	}
	return e.Status.String() + ": " + hint
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
func runMenu(ctx context.Context, m *managed, stdin io.Reader, stdout io.Writer) int {
	in := &lineInput{r: bufio.NewReader(stdin)}
	fmt.Fprintf(stdout, "smtpd management client, server %s\n", m.addr)
	for {
		cmd, ok := menuChoice(in, stdout)
		if !ok {
			break
		}
		var arg uint64
		if cmd.TakesArgument() {
			if arg, ok = askNumber(in, stdout, "New maximum size in bytes: ", "%s: "+negativeSize+"."); !ok {
				break
			}
		}
		fmt.Fprintln(stdout, m.describeAnswer(ctx, cmd, arg))
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
		n, ok := askNumber(in, stdout, fmt.Sprintf("Choose an option (0-%d): ", len(menuItems)), "There is no option %s.")
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
// after a negative number it prints notNegative, a format for the number,
// that says why not. ok is false at the end of input.
func askNumber(in *lineInput, stdout io.Writer, prompt, notNegative string) (uint64, bool) {
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
		if strings.HasPrefix(text, "-") && isDigits(text[1:]) {
			fmt.Fprintf(stdout, notNegative+"\n", text)
			continue
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
func (m *managed) describeAnswer(ctx context.Context, cmd smtpd.Command, arg uint64) string {
	value, err := m.c.Do(ctx, cmd, arg)
	var statusErr *smtpd.StatusError
	switch {
	case errors.As(err, &statusErr):
		return "The server refused: " + m.explainStatus(statusErr)
	case errors.Is(err, smtpd.ErrTimeout):
		return "The server did not answer."
	case err != nil:
		return "Error: " + err.Error()
	}
	return describeValue(cmd, value)
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

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
