package smtpd

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// gateWaiter is a check waiting in an authGate, in its own goroutine.
type gateWaiter struct {
	queued chan struct{} // closed once it waits
	done   chan error    // acquire's result
}

func startWaiter(ctx context.Context, g *authGate, ip netip.Addr) *gateWaiter {
	w := &gateWaiter{queued: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- g.acquire(ctx, ip, func() { close(w.queued) }) }()
	select {
	case <-w.queued:
	case err := <-w.done:
		w.done <- err // admitted at once: the caller's check sees it
	case <-time.After(10 * time.Second):
		panic("acquire neither waited nor returned")
	}
	return w
}

// admitted reports whether w's check got its slot (without waiting for it).
func (w *gateWaiter) admitted(t *testing.T) bool {
	t.Helper()
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		return true
	default:
		return false
	}
}

// mustAdmit waits for w's check to get its slot.
func (w *gateWaiter) mustAdmit(t *testing.T) {
	t.Helper()
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a check waits although a slot was freed for it")
	}
}

// mustBeIdle fails unless every one of the gate's slots is free and it
// remembers no address.
func mustBeIdle(t *testing.T, g *authGate, slots int) {
	t.Helper()
	if g.free != slots || len(g.addrs) != 0 {
		t.Errorf("%d slots free, %d addresses known; want %d and 0", g.free, len(g.addrs), slots)
	}
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("198.51.100.7")
)

// TestAuthGateFairness: with every slot taken by one address, a freed slot
// goes to a check from another address before that address's next one,
// whatever the order they came in.
func TestAuthGateFairness(t *testing.T) {
	g := newAuthGate(2)
	ctx := t.Context()
	for range 2 {
		if err := g.acquire(ctx, addrA, func() { t.Error("waited with a slot free") }); err != nil {
			t.Fatal(err)
		}
	}
	a3 := startWaiter(ctx, g, addrA)
	a4 := startWaiter(ctx, g, addrA)
	b1 := startWaiter(ctx, g, addrB)
	if a3.admitted(t) || a4.admitted(t) || b1.admitted(t) {
		t.Fatal("a check got a slot while both were taken")
	}

	g.release(addrA)
	b1.mustAdmit(t)
	if a3.admitted(t) || a4.admitted(t) {
		t.Error("a second check from A got the freed slot before B's first")
	}
	g.release(addrB)
	a3.mustAdmit(t) // A's checks in the order they came
	if a4.admitted(t) {
		t.Error("two checks got one slot")
	}
	g.release(addrA)
	a4.mustAdmit(t)
	g.release(addrA)
	g.release(addrA)
	mustBeIdle(t, g, 2)
}

// TestAuthGateTakesTurns: with one slot, addresses take turns, each
// address's checks in the order they came.
func TestAuthGateTakesTurns(t *testing.T) {
	g := newAuthGate(1)
	ctx := t.Context()
	if err := g.acquire(ctx, addrA, nil); err != nil {
		t.Fatal(err)
	}
	a2 := startWaiter(ctx, g, addrA)
	a3 := startWaiter(ctx, g, addrA)
	b1 := startWaiter(ctx, g, addrB) // came last, served first: A was just served
	b2 := startWaiter(ctx, g, addrB)
	for i, w := range []*gateWaiter{b1, a2, b2, a3} {
		ip := addrA
		if i%2 == 1 {
			ip = addrB
		}
		g.release(ip)
		w.mustAdmit(t)
	}
	g.release(addrA)
	mustBeIdle(t, g, 1)
}

// TestAuthGateGivesUp: a check that waits until its context ends gets
// errAuthBusy and leaves no trace in the gate.
func TestAuthGateGivesUp(t *testing.T) {
	g := newAuthGate(1)
	if err := g.acquire(t.Context(), addrA, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	w := startWaiter(ctx, g, addrB)
	cancel()
	select {
	case err := <-w.done:
		if !errors.Is(err, errAuthBusy) {
			t.Errorf("acquire after its context ended: %v, want errAuthBusy", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acquire still waits after its context ended")
	}
	g.release(addrA)
	mustBeIdle(t, g, 1)
}

// TestGateKey: an IPv6 client is counted by its /64.
func TestGateKey(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::5"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if gateKey(a) != gateKey(b) {
		t.Errorf("%v and %v, in one /64, have keys %v and %v", a, b, gateKey(a), gateKey(b))
	}
	if c := netip.MustParseAddr("2001:db8:1:3::5"); gateKey(a) == gateKey(c) {
		t.Errorf("%v and %v, in two /64s, share key %v", a, c, gateKey(a))
	}
	if gateKey(addrA) != addrA {
		t.Errorf("gateKey(%v) = %v", addrA, gateKey(addrA))
	}
}
