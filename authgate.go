package smtpd

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// authGate admits password checks (calls of Config.Authenticate): at most
// a fixed number at once (MaxAuthChecks), as Dovecot checks passwords in a
// fixed number of workers, so that sessions guessing passwords cannot take
// every core. When checks wait, a freed slot goes to the client address
// with the fewest checks running, then to the one served longest ago, then
// to the one waiting longest: a real user waits for about one check, not
// behind every guess queued from an attacker's address.
type authGate struct {
	mu    sync.Mutex
	free  int    // slots no check holds
	clock uint64 // ticks at each arrival and each grant: orders them
	addrs map[netip.Addr]*gateAddr
}

// gateAddr is what a gate knows of one client address: it is forgotten
// when the address has no check running or waiting.
type gateAddr struct {
	running int
	waiting []gateTurn // oldest first
	served  uint64     // the clock at its latest slot
}

// gateTurn is a waiting check: its channel is closed when it gets a slot.
type gateTurn struct {
	admit   chan struct{}
	arrived uint64
}

func newAuthGate(slots int) *authGate {
	return &authGate{free: slots, addrs: make(map[netip.Addr]*gateAddr)}
}

// gateKey is the address a client's checks are counted under: its IP
// address, or for IPv6 its /64, which one client usually has whole.
func gateKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// acquire waits for a slot for a check from client address ip, until ctx
// ends; it then returns errAuthBusy. It calls queued, if not nil, when the
// check has to wait. After a nil error the caller must call release with
// the same address.
func (g *authGate) acquire(ctx context.Context, ip netip.Addr, queued func()) error {
	key := gateKey(ip)
	g.mu.Lock()
	g.clock++
	a := g.addrs[key]
	if a == nil {
		a = new(gateAddr)
		g.addrs[key] = a
	}
	if g.free > 0 { // then nothing waits: a freed slot goes to a waiter first
		g.free--
		g.grant(a)
		g.mu.Unlock()
		return nil
	}
	turn := gateTurn{admit: make(chan struct{}), arrived: g.clock}
	a.waiting = append(a.waiting, turn)
	g.mu.Unlock()
	if queued != nil {
		queued()
	}

	select {
	case <-turn.admit:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-turn.admit: // the slot came as ctx ended: pass it on
		g.handOver(key)
	default:
		a.waiting = slices.DeleteFunc(a.waiting, func(t gateTurn) bool { return t.admit == turn.admit })
		g.forget(key)
	}
	return errAuthBusy
}

// release frees the slot of a check from client address ip.
func (g *authGate) release(ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handOver(gateKey(ip))
}

// grant counts a slot given to a. g.mu is held.
func (g *authGate) grant(a *gateAddr) {
	g.clock++
	a.running++
	a.served = g.clock
}

// handOver frees a slot of key and gives it to the check that waits first
// in the gate's order, if any. g.mu is held.
func (g *authGate) handOver(key netip.Addr) {
	g.addrs[key].running--
	g.forget(key)
	var next *gateAddr
	for _, a := range g.addrs {
		if len(a.waiting) > 0 && (next == nil || a.before(next)) {
			next = a
		}
	}
	if next == nil {
		g.free++
		return
	}
	turn := next.waiting[0]
	next.waiting = next.waiting[1:]
	g.grant(next)
	close(turn.admit)
}

// before reports whether a's oldest waiting check goes before b's.
func (a *gateAddr) before(b *gateAddr) bool {
	switch {
	case a.running != b.running:
		return a.running < b.running
	case a.served != b.served:
		return a.served < b.served
	}
	return a.waiting[0].arrived < b.waiting[0].arrived
}

// forget drops key once nothing runs or waits for it. g.mu is held.
func (g *authGate) forget(key netip.Addr) {
	if a := g.addrs[key]; a.running == 0 && len(a.waiting) == 0 {
		delete(g.addrs, key)
	}
}
