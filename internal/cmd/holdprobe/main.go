// Command holdprobe measures what idle sessions cost an smtpd server: it
// starts the server (or takes a running one), holds N sessions open over
// several client processes, probes how long a new client waits for its
// greeting meanwhile, checks that every held session still answers, and
// prints one JSON line: resident memory before and while holding, KiB per
// session, greeting latency.
//
//	go build -o /tmp/smtpd ./cmd/smtpd
//	go run ./internal/cmd/holdprobe -server /tmp/smtpd -n 19000 -procs 4
//
// Loopback only; every phase is bounded in time; it stops every process it
// started, by PID.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tpe-protos/smtpd/internal/holdprobe"
)

var (
	flagServer   = flag.String("server", "", "smtpd `binary` to start on 127.0.0.1 (or give -addr and -pid)")
	flagAddr     = flag.String("addr", "", "address of a running server (loopback only)")
	flagPid      = flag.Int("pid", 0, "PID of the running server at -addr, for its memory")
	flagN        = flag.Int("n", 10000, "idle sessions to hold")
	flagProcs    = flag.Int("procs", 4, "client processes to spread them over (each may open only so many files)")
	flagPar      = flag.Int("par", 32, "parallel session setups per client process")
	flagProbes   = flag.Int("probes", 20, "new clients timed to their greeting while the sessions are held")
	flagHold     = flag.Duration("hold", 5*time.Second, "least time to hold the sessions, sampling the server's memory")
	flagSetup    = flag.Duration("setup", 2*time.Minute, "cap on setting up the sessions")
	flagMaxConns = flag.Int("max-conns", 0, "-max-conns for the started server (0: n plus a margin)")
	flagChild    = flag.Bool("child", false, "internal: run as a client process")
)

// ioTimeout bounds every single connect and reply wait.
const ioTimeout = 30 * time.Second

func main() {
	flag.Parse()
	if *flagChild {
		child()
		return
	}
	res, err := run()
	if res != nil {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "holdprobe:", err)
		os.Exit(1)
	}
}

// result is the JSON line holdprobe prints.
type result struct {
	Requested     int                 `json:"requested"`
	Established   int                 `json:"established"`
	SetupFailed   int                 `json:"setup_failed"`
	FirstError    string              `json:"first_error,omitempty"`
	SetupS        float64             `json:"setup_s"`
	Alive         int                 `json:"alive_at_end"`
	RSSBeforeKiB  int64               `json:"server_rss_before_kib"`
	RSSHoldKiB    int64               `json:"server_rss_hold_kib"`
	KiBPerSession float64             `json:"kib_per_session"`
	ServerFDs     int                 `json:"server_fds_holding"`
	Connect       holdprobe.Latencies `json:"connect_while_holding"`
	Greeting      holdprobe.Latencies `json:"greeting_after_connect"`
}

func run() (*result, error) {
	addr, pid := *flagAddr, *flagPid
	if *flagServer != "" {
		srv, err := startServer(*flagServer, *flagN)
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		addr, pid = srv.addr, srv.cmd.Process.Pid
	}
	if err := holdprobe.CheckLoopback(addr); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond) // let the server settle before the baseline
	res := &result{Requested: *flagN}
	res.RSSBeforeKiB, _ = holdprobe.RSS(pid)

	start := time.Now()
	clients, err := startClients(addr, *flagN, *flagProcs)
	defer clients.stop()
	if err != nil {
		return res, err
	}
	for _, c := range clients {
		res.Established += c.established
		res.SetupFailed += c.failed
		if res.FirstError == "" {
			res.FirstError = c.firstErr
		}
	}
	res.SetupS = seconds(time.Since(start))

	rssMax := hold(addr, pid, res)
	res.Alive = clients.check()
	if pid > 0 && res.Established > 0 {
		res.RSSHoldKiB = rssMax
		res.KiBPerSession = float64(rssMax-res.RSSBeforeKiB) / float64(res.Established)
		res.KiBPerSession = float64(int64(res.KiBPerSession*1000)) / 1000
	}
	if res.Alive != *flagN {
		return res, fmt.Errorf("%d of %d sessions alive at the end", res.Alive, *flagN)
	}
	return res, nil
}

// hold times new clients' greetings, spread over at least -hold, while
// sampling the server's memory; it returns the largest RSS seen.
func hold(addr string, pid int, res *result) int64 {
	var rssMax int64
	sample := func() {
		if v, err := holdprobe.RSS(pid); err == nil {
			rssMax = max(rssMax, v)
		}
	}
	end := time.Now().Add(*flagHold)
	every := *flagHold / time.Duration(max(1, *flagProbes))
	var connects, greets []time.Duration
	failed := 0
	for i := 0; i < *flagProbes || time.Now().Before(end); i++ {
		sample()
		if i < *flagProbes {
			if c, g, err := holdprobe.Greeting(addr, ioTimeout); err != nil {
				failed++
			} else {
				connects, greets = append(connects, c), append(greets, g)
			}
		}
		if i == 1 {
			res.ServerFDs, _ = holdprobe.FDs(pid)
		}
		time.Sleep(every)
	}
	sample()
	res.Connect = holdprobe.Summarize(connects, failed)
	res.Greeting = holdprobe.Summarize(greets, failed)
	return rssMax
}

// server is an smtpd process started by holdprobe.
type server struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

// startServer starts bin on a free loopback port with a fresh data
// directory and waits for its "Listening on TCP" line.
func startServer(bin string, n int) (*server, error) {
	dir, err := os.MkdirTemp("", "holdprobe-")
	if err != nil {
		return nil, err
	}
	maxConns := *flagMaxConns
	if maxConns == 0 {
		maxConns = n + *flagProbes + 100
	}
	cmd := exec.Command(bin, "-l", "127.0.0.1", "-p", "0", "-M", "-1",
		"-d", filepath.Join(dir, "data"), "-maildir", filepath.Join(dir, "Maildir"),
		"-max-conns", strconv.Itoa(maxConns))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &server{cmd: cmd, dir: dir}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "Listening on TCP "); ok {
				addr <- a
			}
		}
	}()
	select {
	case s.addr = <-addr:
		return s, nil
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, errors.New("the server did not say where it listens within 10s")
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 10 s.
func (s *server) stop() {
	stopProcess(s.cmd, 10*time.Second)
	os.RemoveAll(s.dir)
}

// stopProcess sends SIGTERM to the process cmd started and kills it if it
// has not exited after grace.
func stopProcess(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// client is one client process holding its share of the sessions.
type client struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	lines       chan string
	established int
	failed      int
	firstErr    string
}

type clients []*client

// startClients starts procs copies of holdprobe -child and waits until each
// has set up its share of n sessions.
func startClients(addr string, n, procs int) (clients, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cs clients
	for i := range procs {
		share := n/procs + btoi(i < n%procs)
		c, err := startClient(self, addr, share)
		if err != nil {
			return cs, err
		}
		cs = append(cs, c)
	}
	deadline := time.After(*flagSetup + ioTimeout)
	for _, c := range cs {
		select {
		case line := <-c.lines:
			f := strings.SplitN(line, " ", 4) // READY established failed first-error
			if len(f) < 3 || f[0] != "READY" {
				return cs, fmt.Errorf("client: %q", line)
			}
			c.established, _ = strconv.Atoi(f[1])
			c.failed, _ = strconv.Atoi(f[2])
			if len(f) == 4 {
				c.firstErr = f[3]
			}
		case <-deadline:
			return cs, errors.New("the clients did not set up their sessions in time")
		}
	}
	return cs, nil
}

func startClient(self, addr string, n int) (*client, error) {
	cmd := exec.Command(self, "-child", "-addr", addr, "-n", strconv.Itoa(n),
		"-par", strconv.Itoa(*flagPar), "-setup", flagSetup.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &client{cmd: cmd, stdin: stdin, lines: make(chan string, 2)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c, nil
}

// check tells every client to check its sessions and returns how many
// answered.
func (cs clients) check() int {
	for _, c := range cs {
		io.WriteString(c.stdin, "check\n")
	}
	alive := 0
	deadline := time.After(2*ioTimeout + 30*time.Second)
	for _, c := range cs {
		select {
		case line := <-c.lines:
			if n, ok := strings.CutPrefix(line, "ALIVE "); ok {
				v, _ := strconv.Atoi(n)
				alive += v
			}
		case <-deadline:
			return alive
		}
	}
	return alive
}

// stop ends the client processes that are still running.
func (cs clients) stop() {
	for _, c := range cs {
		c.stdin.Close()
		stopProcess(c.cmd, 5*time.Second)
	}
}

// child holds -n sessions, says "READY established failed [first error]",
// waits for a line on stdin (or its end, or a time cap), then checks every
// session, says "ALIVE n" and exits.
func child() {
	if err := holdprobe.CheckLoopback(*flagAddr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h := holdprobe.Hold(*flagAddr, *flagN, *flagPar, ioTimeout, time.Now().Add(*flagSetup))
	firstErr := ""
	if h.FirstErr != nil {
		firstErr = " " + strings.ReplaceAll(h.FirstErr.Error(), "\n", " ")
	}
	fmt.Printf("READY %d %d%s\n", len(h.Conns), h.Failed, firstErr)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "check" {
			h.Close() // the parent is gone
			return
		}
	case <-time.After(*flagSetup + 10*time.Minute):
		h.Close()
		return
	}
	fmt.Printf("ALIVE %d\n", h.Check(*flagPar, ioTimeout))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func seconds(d time.Duration) float64 {
	return float64(d.Milliseconds()) / 1000
}
