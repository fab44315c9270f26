package smtpd

import (
	"errors"
	"math"
	"net"
	"sync"
	"time"
)

// minMetricsKey is the shortest management key accepted: 128 bits.
const minMetricsKey = 16

// ServeMetrics answers management protocol requests
// (docs/metrics-protocol.md) arriving on pc until Shutdown or Close. It
// always returns a non-nil error and closes pc; after Shutdown or Close the
// error is ErrServerClosed.
//
// It needs Config.MetricsKey, of at least 16 bytes. Requests are answered one
// at a time on the calling goroutine: each takes a few microseconds, and no
// datagram, however malformed, can block the loop.
func (srv *Server) ServeMetrics(pc net.PacketConn) error {
	defer pc.Close()
	if err := srv.init(); err != nil {
		return err
	}
	if len(srv.set.metricsKey) == 0 {
		return errors.New("smtpd: ServeMetrics needs Config.MetricsKey")
	}
	if !srv.trackPacketConn(pc, true) {
		return ErrServerClosed
	}
	defer srv.trackPacketConn(pc, false)
	srv.startStateSaver()
	// Reading into a buffer larger than a request lets an oversized
	// datagram be seen as such rather than silently truncated to 40 bytes.
	buf := make([]byte, 2*requestSize)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if srv.shuttingDown() {
				return ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				continue
			}
			return err
		}
		if answer := srv.answer(buf[:n], time.Now()); answer != nil {
			pc.WriteTo(answer, addr)
		}
	}
}

// trackPacketConn adds or removes pc; it refuses to add once shutdown began.
func (srv *Server) trackPacketConn(pc net.PacketConn, add bool) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !add {
		delete(srv.packetConns, pc)
		return true
	}
	if srv.shuttingDown() {
		return false
	}
	srv.packetConns[pc] = struct{}{}
	if srv.metricsAddr == nil {
		srv.metricsAddr = pc.LocalAddr()
	}
	return true
}

// MetricsAddr returns the address of the first connection ServeMetrics
// served, or nil before.
func (srv *Server) MetricsAddr() net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.metricsAddr
}

// answer returns the response to a request datagram, or nil when the
// datagram deserves none.
func (srv *Server) answer(datagram []byte, now time.Time) []byte {
	key := srv.set.metricsKey
	req, err := parseRequest(datagram, key)
	resp := response{id: req.id, command: req.command}
	switch {
	case errors.Is(err, errDrop):
		return nil
	case errors.Is(err, errBadLength):
		resp.status = StatusInvalidRequestLength
	case errors.Is(err, errBadVersion):
		resp.status = StatusInvalidVersion
	case errors.Is(err, errBadMAC):
		resp.status = StatusAuthFailed
	case !srv.replay.admit(req.id, req.timestamp, now):
		resp.status = StatusAuthFailed
	default:
		resp.value, resp.status = srv.run(req.command, req.argument)
	}
	if resp.status == StatusAuthFailed {
		srv.logRefused(now)
	}
	return appendResponse(make([]byte, 0, responseSize), resp, key)
}

// refusedLogInterval is how often refused management requests are logged:
// anyone can send datagrams with a valid signature, and must not be able to
// flood the log with them.
const refusedLogInterval = 10 * time.Second

// logRefused counts a refused request and logs the count at most once per
// refusedLogInterval.
func (srv *Server) logRefused(now time.Time) {
	srv.refused.Add(1)
	last := srv.refusedLogged.Load()
	if now.UnixNano()-last < int64(refusedLogInterval) || !srv.refusedLogged.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	srv.log.Warn("smtpd: management requests refused (bad MAC, stale timestamp or replay)", "count", srv.refused.Swap(0))
}

// run carries out an authenticated command.
func (srv *Server) run(cmd Command, arg uint64) (uint64, Status) {
	switch cmd {
	case CmdHistoricalConnections:
		return srv.stats.connections.Load(), StatusOK
	case CmdConcurrentConnections:
		return uint64(srv.stats.sessions.Load()), StatusOK
	case CmdBytesTransferred:
		return srv.stats.bytesIn.Load() + srv.stats.bytesOut.Load(), StatusOK
	case CmdVerboseOn, CmdVerboseOff:
		srv.setVerbose(cmd == CmdVerboseOn, "management request")
		return boolValue(cmd == CmdVerboseOn), StatusOK
	case CmdVerboseStatus:
		return boolValue(srv.verbose.Load()), StatusOK
	case CmdMessages:
		return srv.stats.messages.Load(), StatusOK
	case CmdUptime:
		return uint64(time.Since(srv.started).Seconds()), StatusOK
	case CmdGetMaxSize:
		return uint64(srv.maxSize.Load()), StatusOK
	case CmdSetMaxSize:
		if arg == 0 || arg > math.MaxInt64 {
			return 0, StatusInvalidArgument
		}
		srv.maxSize.Store(int64(arg))
		return arg, StatusOK
	case CmdFilterStatus:
		return boolValue(srv.filterOn.Load()), StatusOK
	case CmdFilterOn:
		if !srv.hasFilter() {
			return 0, StatusUnexpectedError
		}
		srv.filterOn.Store(true)
		return 1, StatusOK
	case CmdFilterOff:
		srv.filterOn.Store(false)
		return 0, StatusOK
	}
	return 0, StatusInvalidCommand
}

// RuntimeSettings are the settings that can change while a server runs,
// through the management protocol (docs/metrics-protocol.md §6).
type RuntimeSettings struct {
	// Verbose reports whether the session trace is on; it starts as
	// Config.Verbose.
	Verbose bool
	// MaxMessageBytes is the message size limit; it starts as
	// Config.MaxMessageBytes.
	MaxMessageBytes int64
	// Filter reports whether the content filter runs; it starts on when
	// Config.Filter is set.
	Filter bool
}

// RuntimeSettings returns the settings in force now.
func (srv *Server) RuntimeSettings() RuntimeSettings {
	return RuntimeSettings{
		Verbose:         srv.verbose.Load(),
		MaxMessageBytes: srv.maxSize.Load(),
		Filter:          srv.filterOn.Load(),
	}
}

// setVerbose switches the session trace on or off; the trace marks the
// change, saying why (see tracer.turn).
func (srv *Server) setVerbose(on bool, why string) {
	if srv.trace == nil {
		srv.verbose.Store(on)
		return
	}
	srv.trace.turn(on, why)
}

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// maxReplayEntries bounds the replay cache. Only requests with a valid MAC
// reach it, so only a key holder could fill it.
const maxReplayEntries = 1 << 16

// replayGuard enforces the timestamp window and rejects an (identifier,
// timestamp) pair seen before within it.
type replayGuard struct {
	mu   sync.Mutex
	seen map[replayKey]time.Time // when each entry may be forgotten
}

type replayKey struct {
	id        uint16
	timestamp uint64
}

// admit reports whether a request with this identifier and timestamp may
// run at time now, and remembers it.
func (g *replayGuard) admit(id uint16, timestamp uint64, now time.Time) bool {
	if timestamp > math.MaxInt64 {
		return false
	}
	t := time.UnixMilli(int64(timestamp))
	if t.Before(now.Add(-replayWindow)) || t.After(now.Add(replayWindow)) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seen == nil {
		g.seen = make(map[replayKey]time.Time)
	}
	key := replayKey{id, timestamp}
	if _, dup := g.seen[key]; dup {
		return false
	}
	if len(g.seen) >= maxReplayEntries/2 {
		g.forget(now)
	}
	if len(g.seen) >= maxReplayEntries {
		return false
	}
	// Once its timestamp has left the window, the pair would be
	// refused anyway and need not be remembered.
	g.seen[key] = t.Add(replayWindow)
	return true
}

// forget drops the entries whose timestamps have left the window.
func (g *replayGuard) forget(now time.Time) {
	for k, expiry := range g.seen {
		if now.After(expiry) {
			delete(g.seen, k)
		}
	}
}
