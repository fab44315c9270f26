// Command authload measures how long a real user's AUTH takes while many
// sessions guess passwords: it starts an smtpd binary on 127.0.0.1 with one
// user (a bcrypt hash of the default cost, as -hash-password makes it),
// times the user's AUTH PLAIN on a quiet server, then again while -guessers
// sessions send wrong passwords without pause from 127.0.0.1 (each
// reconnecting when the server closes it after -max-auth-failures), the
// user connecting from -user-from, and prints one JSON line:
// the latencies of both phases, and how the guesses were answered.
//
//	go build -o /tmp/smtpd ./cmd/smtpd
//	go run ./internal/cmd/authload -server /tmp/smtpd -guessers 100
//
// Loopback only; every wait is bounded; it stops the server it started, by
// PID.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tpe-protos/smtpd/client"
)

var (
	flagServer   = flag.String("server", "", "smtpd `binary` to start on 127.0.0.1")
	flagGuessers = flag.Int("guessers", 100, "sessions guessing passwords at once")
	flagSamples  = flag.Int("samples", 20, "AUTH commands of the real user timed in each phase")
	flagEvery    = flag.Duration("every", 250*time.Millisecond, "pause between two timed AUTH commands")
	flagWarmup   = flag.Duration("warmup", 3*time.Second, "time the guessers run before the first timed AUTH")
	flagUserFrom = flag.String("user-from", "127.0.0.2", "loopback `address` the real user connects from (the guessers use 127.0.0.1)")
)

const (
	user     = "alice"
	password = "correct horse battery staple"
	// ioTimeout bounds every connect and every reply wait.
	ioTimeout = 2 * time.Minute
)

// result is the JSON line authload prints; durations in milliseconds.
type result struct {
	Guessers int     `json:"guessers"`
	UserFrom string  `json:"user_from"`
	Cores    int     `json:"cores"`
	Quiet    summary `json:"quiet"`
	Loaded   summary `json:"loaded"`
	// Guesses counts the replies the guessers got during the loaded
	// phase, by code ("535", "454", "421").
	Guesses map[string]int64 `json:"guesses"`
}

type summary struct {
	Median float64 `json:"median_ms"`
	P90    float64 `json:"p90_ms"`
	Max    float64 `json:"max_ms"`
	Failed int     `json:"failed"` // AUTH commands that did not get 235
}

func main() {
	flag.Parse()
	if *flagServer == "" {
		fmt.Fprintln(os.Stderr, "authload: -server is needed (see go doc ./internal/cmd/authload)")
		os.Exit(2)
	}
	res, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authload:", err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

func run() (*result, error) {
	addr, stop, err := startServer(*flagServer)
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &result{Guessers: *flagGuessers, UserFrom: *flagUserFrom, Cores: runtime.NumCPU(), Guesses: map[string]int64{}}
	res.Quiet = timeAuths(addr)

	g := startGuessers(addr, *flagGuessers)
	time.Sleep(*flagWarmup)
	res.Loaded = timeAuths(addr)
	res.Guesses = g.stop()
	return res, nil
}

// startServer starts the smtpd binary with one user and returns its SMTP
// address and a function that stops it.
func startServer(binary string) (addr string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "authload")
	if err != nil {
		return "", nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", nil, err
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(binary, "-l", "127.0.0.1", "-p", "0", "-M", "-1", "-d", filepath.Join(dir, "data"),
		"-users", users, "-allow-insecure-auth", "-max-conns", "1000")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = io.Discard // every failed guess is a WARN line
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dir)
	}
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "Listening on TCP "); ok {
			go io.Copy(io.Discard, out)
			return a, stop, nil
		}
	}
	stop()
	return "", nil, errors.New("the server did not say where it listens")
}

// timeAuths times the real user's AUTH PLAIN, one session each, and sums up.
func timeAuths(addr string) summary {
	var (
		took []time.Duration
		s    summary
	)
	for range *flagSamples {
		d, err := timeAuth(addr)
		if err != nil {
			s.Failed++
		} else {
			took = append(took, d)
		}
		time.Sleep(*flagEvery)
	}
	if len(took) == 0 {
		return s
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.Median = ms(took[len(took)/2])
	s.P90 = ms(took[len(took)*9/10])
	s.Max = ms(took[len(took)-1])
	return s
}

// timeAuth opens a session and returns how long its AUTH took to be
// answered 235.
func timeAuth(addr string) (time.Duration, error) {
	c, err := session(*flagUserFrom, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	r, err := c.Cmd("AUTH PLAIN " + plain(user, password))
	if err != nil {
		return 0, err
	}
	if r.Code != 235 {
		return 0, r
	}
	return time.Since(start), nil
}

// session connects from the address from and says EHLO.
func session(from, addr string) (*client.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: ioTimeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := client.NewClient(conn)
	c.Timeout = ioTimeout
	if _, err := c.Greeting(); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Hello("authload.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func plain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}

// guessers are sessions sending wrong passwords until stopped.
type guessers struct {
	done    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*client.Client]bool
	replies sync.Map // reply code → *atomic.Int64
}

func startGuessers(addr string, n int) *guessers {
	g := &guessers{conns: map[*client.Client]bool{}}
	for i := range n {
		g.wg.Go(func() { g.guess(addr, i) })
	}
	return g
}

// guess runs one guesser: session after session, wrong password after
// wrong password.
func (g *guessers) guess(addr string, i int) {
	for try := 0; !g.done.Load(); {
		c, err := session("127.0.0.1", addr)
		if err != nil {
			g.count("connect error")
			time.Sleep(100 * time.Millisecond) // not a busy loop if the server is gone
			continue
		}
		if !g.track(c, true) {
			c.Close()
			return
		}
		for !g.done.Load() {
			try++
			r, err := c.Cmd("AUTH PLAIN " + plain(user, fmt.Sprintf("guess-%d-%d", i, try)))
			if err != nil {
				break // closed: after the last failure allowed, or stopped
			}
			g.count(fmt.Sprint(r.Code))
			if r.Code == 421 {
				break
			}
		}
		g.track(c, false)
		c.Close()
	}
}

func (g *guessers) track(c *client.Client, add bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if add && g.done.Load() {
		return false
	}
	if add {
		g.conns[c] = true
	} else {
		delete(g.conns, c)
	}
	return true
}

func (g *guessers) count(code string) {
	if g.done.Load() {
		return // the stop closes sessions mid-command: not the server's answer
	}
	n, _ := g.replies.LoadOrStore(code, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

// stop ends every guesser and returns the replies they got.
func (g *guessers) stop() map[string]int64 {
	counts := map[string]int64{}
	g.replies.Range(func(k, v any) bool {
		counts[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	g.mu.Lock()
	g.done.Store(true)
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return counts
}
