package main

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"
)

// buildMessage returns a message of exactly size bytes (headers + body, CRLF
// line endings, no line starting with '.') and the offset of an 8-digit
// counter inside its Message-ID that the sender overwrites per message.
func buildMessage(size, worker int) ([]byte, int) {
	hdr := fmt.Sprintf("From: <sender@smtpload.test>\r\n"+
		"To: undisclosed-recipients:;\r\n"+
		"Subject: smtpload test message\r\n"+
		"Date: %s\r\n"+
		"Message-ID: <%04d.00000000@smtpload.test>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n"+
		"\r\n", time.Now().UTC().Format(time.RFC1123Z), worker)
	msg := make([]byte, 0, size)
	msg = append(msg, hdr...)
	idOff := bytes.Index(msg, []byte(".00000000@")) + 1
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	fill := size - len(msg)
	// Lines of 78 characters + CRLF; the last line absorbs the remainder.
	lines := fill / 80
	rem := fill % 80
	k := 0
	line := func(n int) {
		for i := 0; i < n; i++ {
			msg = append(msg, alphabet[k%len(alphabet)])
			k++
		}
		msg = append(msg, '\r', '\n')
	}
	for i := 0; i < lines; i++ {
		if i == lines-1 && rem == 1 {
			line(79) // 81 bytes: absorbs a remainder of 1
			rem = 0
			break
		}
		line(78)
	}
	if rem >= 2 {
		line(rem - 2)
	}
	if len(msg) != size {
		panic(fmt.Sprintf("buildMessage: built %d bytes, want %d", len(msg), size))
	}
	return msg, idOff
}

func putDigits(b []byte, n int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

type tpWorker struct {
	id         int
	lat        []time.Duration
	ok, failed int
	errs       errCounter
	capHit     bool
	sawPipe    bool
	sawSize    bool
	connects   int
}

var (
	crlfDot  = []byte(".\r\n")
	quitLine = []byte("QUIT\r\n")
	dataLine = []byte("DATA\r\n")
)

func runThroughput() map[string]any {
	C, M, S, R, K := *flagC, *flagM, *flagS, *flagR, *flagMailboxes
	rcptLines := make([][]byte, K)
	for i := range rcptLines {
		rcptLines[i] = []byte(fmt.Sprintf("RCPT TO:<user%03d@smtpload.test>\r\n", i))
	}
	cpu0 := selfCPU()
	scpu := startServerCPU(*flagServerPid)
	start := time.Now()
	capAt := start.Add(*flagD)
	hard := capAt.Add(10 * time.Second) // in-flight I/O is cut off here
	workers := make([]*tpWorker, C)
	var wg sync.WaitGroup
	for i := range workers {
		w := &tpWorker{id: i, lat: make([]time.Duration, 0, M)}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(M, S, R, K, rcptLines, capAt, hard)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	var errs errCounter
	ok, failed, connects := 0, 0, 0
	capHit, sawPipe, sawSize := false, false, false
	for _, w := range workers {
		all = append(all, w.lat...)
		errs.merge(&w.errs)
		ok += w.ok
		failed += w.failed
		connects += w.connects
		capHit = capHit || w.capHit
		sawPipe = sawPipe || w.sawPipe
		sawSize = sawSize || w.sawSize
	}
	sec := elapsed.Seconds()
	res := map[string]any{
		"mode":              "throughput",
		"concurrency":       C,
		"msgs_per_conn":     M,
		"size":              S,
		"rcpts":             R,
		"mailboxes":         K,
		"pipelining":        *flagPipe,
		"server_pipelining": sawPipe,
		"server_size":       sawSize,
		"attempted":         ok + failed,
		"ok":                ok,
		"failed_msgs":       failed,
		"connections":       connects,
		"cap_hit":           capHit,
		"elapsed_s":         round3(sec),
		"msgs_per_s":        round3(float64(ok) / sec),
		"mb_per_s":          round3(float64(ok) * float64(S) / 1e6 / sec),
		"client_cpu_s":      round3(selfCPU() - cpu0),
	}
	errs.put(res)
	latencies(res, "lat_", all)
	scpu.put(res)
	logf("throughput: %d ok, %d errors in %.2fs = %.1f msg/s", ok, errs.n, sec, float64(ok)/sec)
	return res
}

func (w *tpWorker) run(M, S, R, K int, rcptLines [][]byte, capAt, hard time.Time) {
	msg, idOff := buildMessage(S, w.id)
	pipelined := *flagPipe
	var sc *smtpConn
	var mailLine []byte
	cmd := make([]byte, 0, 512)
	fail := func(step string, err error) {
		w.failed++
		w.errs.add(errKind(step, err), err)
		if sc != nil {
			sc.close()
			sc = nil
		}
	}
	for j := 0; j < M; j++ {
		if time.Now().After(capAt) {
			w.capHit = true
			break
		}
		if sc == nil {
			var err error
			w.connects++
			sc, err = dial(*flagAddr, *flagIOTimeout, hard, 4096, 64<<10)
			if err != nil {
				fail("connect", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err := sc.greet(*flagEhlo); err != nil {
				fail("greet", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			w.sawPipe = w.sawPipe || sc.pipe
			w.sawSize = w.sawSize || sc.size
			if pipelined && !sc.pipe && !*flagForcePipe {
				fail("ehlo", errNoPipelining)
				w.failed += M - j - 1 // give up on this worker's remaining messages
				return
			}
			mailLine = []byte("MAIL FROM:<sender@smtpload.test>\r\n")
			if sc.size {
				mailLine = []byte(fmt.Sprintf("MAIL FROM:<sender@smtpload.test> SIZE=%d\r\n", S))
			}
		}
		last := j == M-1
		putDigits(msg[idOff:idOff+8], j)
		t0 := time.Now()
		var err error
		if pipelined {
			cmd = append(cmd[:0], mailLine...)
			for i := 0; i < R; i++ {
				cmd = append(cmd, rcptLines[(w.id*M*R+j*R+i)%K]...)
			}
			cmd = append(cmd, dataLine...)
			err = w.sendPipelined(sc, cmd, R, msg, last)
		} else {
			err = w.sendPlain(sc, mailLine, rcptLines, j, M, R, K, msg)
		}
		if err != nil {
			var se *stepError
			step := "msg"
			if errors.As(err, &se) {
				step = se.step
			}
			fail(step, err)
			continue
		}
		w.lat = append(w.lat, time.Since(t0))
		w.ok++
		if last {
			var qerr error
			if pipelined {
				qerr = sc.expect(221, nil) // QUIT went out together with the body
			} else {
				qerr = sc.quit()
			}
			if qerr != nil {
				w.errs.add(errKind("quit", qerr), qerr)
			}
			sc.close()
			sc = nil
		}
	}
	if sc != nil { // stopped early by the duration cap
		if err := sc.quit(); err != nil {
			w.errs.add(errKind("quit", err), err)
		}
		sc.close()
	}
}

func (w *tpWorker) sendPlain(sc *smtpConn, mailLine []byte, rcptLines [][]byte, j, M, R, K int, msg []byte) error {
	sc.arm()
	if err := sc.writeNow(mailLine); err != nil {
		return &stepError{"mail", err}
	}
	if err := sc.expect(250, nil); err != nil {
		return &stepError{"mail", err}
	}
	for i := 0; i < R; i++ {
		if err := sc.writeNow(rcptLines[(w.id*M*R+j*R+i)%K]); err != nil {
			return &stepError{"rcpt", err}
		}
		if err := sc.expect(250, nil); err != nil {
			return &stepError{"rcpt", err}
		}
	}
	if err := sc.writeNow(dataLine); err != nil {
		return &stepError{"data", err}
	}
	if err := sc.expect(354, nil); err != nil {
		return &stepError{"data", err}
	}
	sc.arm()
	sc.bw.Write(msg)
	sc.bw.Write(crlfDot)
	if err := sc.bw.Flush(); err != nil {
		return &stepError{"body", err}
	}
	if err := sc.expect(250, nil); err != nil {
		return &stepError{"body", err}
	}
	return nil
}

func (w *tpWorker) sendPipelined(sc *smtpConn, cmd []byte, R int, msg []byte, last bool) error {
	sc.arm()
	if err := sc.writeNow(cmd); err != nil {
		return &stepError{"mail", err}
	}
	if err := sc.expect(250, nil); err != nil {
		return &stepError{"mail", err}
	}
	for i := 0; i < R; i++ {
		if err := sc.expect(250, nil); err != nil {
			return &stepError{"rcpt", err}
		}
	}
	if err := sc.expect(354, nil); err != nil {
		return &stepError{"data", err}
	}
	sc.arm()
	sc.bw.Write(msg)
	sc.bw.Write(crlfDot)
	if last {
		sc.bw.Write(quitLine)
	}
	if err := sc.bw.Flush(); err != nil {
		return &stepError{"body", err}
	}
	if err := sc.expect(250, nil); err != nil {
		return &stepError{"body", err}
	}
	return nil
}
