package smtpd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrTimeout is returned by MetricsClient when no valid answer came after
// every attempt.
var ErrTimeout = errors.New("smtpd: management server did not answer")

// Defaults of MetricsClient.
const (
	DefaultMetricsTimeout  = 500 * time.Millisecond
	DefaultMetricsAttempts = 4
)

// MetricsClient speaks the management protocol (docs/metrics-protocol.md) to
// a server. UDP may lose a datagram either way, so a request that gets no
// valid answer within Timeout is sent again, Attempts times in all, each time
// with a new identifier and timestamp (resending the same pair would be
// refused as a replay). Every command is idempotent, so a retry is harmless.
// Answers are matched by identifier and command and their MAC is checked;
// anything else arriving on the socket is ignored.
//
// A MetricsClient is safe for concurrent use; its requests go one at a time.
type MetricsClient struct {
	// Timeout is how long each attempt waits for the answer; 0 means
	// DefaultMetricsTimeout.
	Timeout time.Duration
	// Attempts is how many times a request is sent; 0 means
	// DefaultMetricsAttempts.
	Attempts int

	conn   net.Conn
	key    []byte
	mu     sync.Mutex
	nextID uint16
}

// DialMetrics returns a client for the management server at addr
// ("127.0.0.1:7030") using key.
func DialMetrics(addr string, key []byte) (*MetricsClient, error) {
	if len(key) < minMetricsKey {
		return nil, errors.New("smtpd: management key must hold at least 16 bytes")
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	return &MetricsClient{conn: conn, key: key, nextID: uint16(rand.Uint32())}, nil
}

// Close closes the client's socket.
func (c *MetricsClient) Close() error { return c.conn.Close() }

// Do sends cmd with its argument and returns the value of the answer. An
// answer whose status is not StatusOK is returned as a *StatusError.
func (c *MetricsClient) Do(ctx context.Context, cmd Command, arg uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	attempts := orDefault(c.Attempts, DefaultMetricsAttempts)
	sent := make(map[uint16]bool, attempts)
	buf := make([]byte, 2*responseSize)
	for range attempts {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		id := c.nextID
		c.nextID++
		sent[id] = true
		req := appendRequest(nil, request{command: cmd, id: id, argument: arg, timestamp: uint64(time.Now().UnixMilli())}, c.key)
		if _, err := c.conn.Write(req); err != nil && !isRefused(err) {
			return 0, err
		}
		resp, ok, err := c.await(ctx, cmd, sent, buf)
		switch {
		case err != nil:
			return 0, err
		case !ok:
			continue // nothing valid in time: send again
		case resp.status != StatusOK:
			return 0, &StatusError{Command: cmd, Status: resp.status}
		}
		return resp.value, nil
	}
	return 0, ErrTimeout
}

// await waits one attempt's time for a valid answer to any of the sent
// identifiers. ok is false when none came; err is set only when ctx ended.
func (c *MetricsClient) await(ctx context.Context, cmd Command, sent map[uint16]bool, buf []byte) (resp response, ok bool, err error) {
	deadline := time.Now().Add(orDefault(c.Timeout, DefaultMetricsTimeout))
	if d, has := ctx.Deadline(); has && d.Before(deadline) {
		deadline = d
	}
	// The deadline first: a context already ended must be able to cut
	// it short.
	c.conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		n, err := c.conn.Read(buf)
		if ctxErr := contextEnded(ctx); ctxErr != nil {
			return response{}, false, fmt.Errorf("%w: %w", ErrTimeout, ctxErr)
		}
		if err != nil {
			if isRefused(err) {
				// Nobody listens there (ICMP port unreachable):
				// wait out the attempt as if the datagram were lost.
				time.Sleep(time.Until(deadline))
			}
			return response{}, false, nil
		}
		r, perr := parseResponse(buf[:n], c.key)
		if !sent[r.id] || r.command != cmd {
			continue
		}
		// An AUTH_FAILED answer is believed even when its MAC does not
		// check: with a wrong key it never would, and a forged one can
		// do no more harm than a dropped datagram.
		if perr == nil || errors.Is(perr, errBadMAC) && r.status == StatusAuthFailed {
			return r, true, nil
		}
	}
}

// contextEnded returns ctx's error, also when its deadline has passed but
// its timer has not fired yet (a read that timed out at the deadline).
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// HistoricalConnections returns the number of connections accepted since
// the counters began (they persist across restarts).
func (c *MetricsClient) HistoricalConnections(ctx context.Context) (uint64, error) {
	return c.Do(ctx, CmdHistoricalConnections, 0)
}

// ConcurrentConnections returns the number of sessions open now.
func (c *MetricsClient) ConcurrentConnections(ctx context.Context) (uint64, error) {
	return c.Do(ctx, CmdConcurrentConnections, 0)
}

// BytesTransferred returns the bytes received and sent by all sessions.
func (c *MetricsClient) BytesTransferred(ctx context.Context) (uint64, error) {
	return c.Do(ctx, CmdBytesTransferred, 0)
}

// SetVerbose switches the session trace on or off, at once for every
// session.
func (c *MetricsClient) SetVerbose(ctx context.Context, on bool) error {
	cmd := CmdVerboseOff
	if on {
		cmd = CmdVerboseOn
	}
	_, err := c.Do(ctx, cmd, 0)
	return err
}

// Verbose reports whether the session trace is on.
func (c *MetricsClient) Verbose(ctx context.Context) (bool, error) {
	v, err := c.Do(ctx, CmdVerboseStatus, 0)
	return v == 1, err
}

// Messages returns the number of messages accepted.
func (c *MetricsClient) Messages(ctx context.Context) (uint64, error) {
	return c.Do(ctx, CmdMessages, 0)
}

// Uptime returns how long the server has been running.
func (c *MetricsClient) Uptime(ctx context.Context) (time.Duration, error) {
	v, err := c.Do(ctx, CmdUptime, 0)
	return time.Duration(v) * time.Second, err
}

// MaxSize returns the message size limit in octets.
func (c *MetricsClient) MaxSize(ctx context.Context) (uint64, error) {
	return c.Do(ctx, CmdGetMaxSize, 0)
}

// SetMaxSize changes the message size limit; the next EHLO advertises it
// and the next MAIL and DATA enforce it. Zero is refused.
func (c *MetricsClient) SetMaxSize(ctx context.Context, n uint64) error {
	_, err := c.Do(ctx, CmdSetMaxSize, n)
	return err
}

// Filter reports whether the content filter is on.
func (c *MetricsClient) Filter(ctx context.Context) (bool, error) {
	v, err := c.Do(ctx, CmdFilterStatus, 0)
	return v == 1, err
}

// SetFilter switches the content filter on or off. Switching on a server
// that has no filter configured fails with StatusUnexpectedError.
func (c *MetricsClient) SetFilter(ctx context.Context, on bool) error {
	cmd := CmdFilterOff
	if on {
		cmd = CmdFilterOn
	}
	_, err := c.Do(ctx, cmd, 0)
	return err
}
