package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tpe-protos/smtpd"
)

// TestNewServerChecksAddresses: what ListenAndServe would fail on later is
// refused by NewServer, and by ListenAndServe of a Server made without it.
func TestNewServerChecksAddresses(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 16)
	for _, tc := range []struct {
		name string
		cfg  smtpd.Config
		want string
	}{
		{"metrics address without a key", smtpd.Config{MetricsAddr: "127.0.0.1:0"}, "Config.MetricsAddr needs Config.MetricsKey"},
		{"short key", smtpd.Config{MetricsKey: key[:15]}, "Config.MetricsKey must hold at least 16 bytes"},
		{"TLS address without TLS", smtpd.Config{TLSAddr: "127.0.0.1:0"}, "Config.TLSAddr needs Config.TLSConfig"},
		{"address without a port", smtpd.Config{Addr: "localhost"}, "Config.Addr: address localhost: missing port"},
		{"bad metrics address", smtpd.Config{MetricsAddr: "127.0.0.1", MetricsKey: key}, "Config.MetricsAddr: address 127.0.0.1: missing port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DataDir = t.TempDir()
			if tc.cfg.Addr == "" {
				tc.cfg.Addr = "127.0.0.1:0"
			}
			if _, err := smtpd.NewServer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewServer: %v; want an error containing %q", err, tc.want)
			}
			srv := &smtpd.Server{Config: tc.cfg}
			served := make(chan error, 1)
			go func() { served <- srv.ListenAndServe() }()
			select {
			case err := <-served:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("ListenAndServe: %v; want an error containing %q", err, tc.want)
				}
			case <-time.After(secWait):
				srv.Close()
				t.Errorf("ListenAndServe serves; want an error containing %q", tc.want)
				<-served
			}
		})
	}
}

// freeTCPAddr returns a loopback address whose port was free a moment ago:
// ListenAndServe reports no addresses, so a test that must reach (or bind
// again) what it listens on picks them.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestListenAndServeBindsAllFirst: when one address cannot be bound,
// ListenAndServe returns the error and serves nothing: the addresses bound
// before it are free again (the previous version left the TLS port
// accepting).
func TestListenAndServeBindsAllFirst(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pki := newTestPKI(t)
	srv, err := smtpd.NewServer(smtpd.Config{
		DataDir:     t.TempDir(),
		Addr:        freeTCPAddr(t),
		TLSAddr:     freeTCPAddr(t),
		TLSConfig:   pki.server,
		MetricsAddr: taken.LocalAddr().String(),
		MetricsKey:  bytes.Repeat([]byte{1}, 16),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	err = srv.ListenAndServe()
	if err == nil || !strings.Contains(err.Error(), "Config.MetricsAddr: ") {
		t.Fatalf("ListenAndServe: %v; want the bind error of Config.MetricsAddr", err)
	}
	for _, addr := range []string{srv.Config.Addr, srv.Config.TLSAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s is still bound after ListenAndServe failed: %v", addr, err)
			continue
		}
		l.Close()
	}
}

// TestListenAndServeServesAll: SMTP, implicit TLS and the management
// protocol are all served, and after Shutdown ListenAndServe returns
// ErrServerClosed with every address closed.
func TestListenAndServeServesAll(t *testing.T) {
	pki := newTestPKI(t)
	key := bytes.Repeat([]byte{1}, 16)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := udp.LocalAddr().String()
	udp.Close()
	srv, err := smtpd.NewServer(smtpd.Config{
		DataDir:     t.TempDir(),
		Addr:        freeTCPAddr(t),
		TLSAddr:     freeTCPAddr(t),
		TLSConfig:   pki.server,
		MetricsAddr: metricsAddr,
		MetricsKey:  key,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	// ListenAndServe says nothing when it is ready; the server's
	// address methods do.
	deadline := time.Now().Add(10 * time.Second)
	for srv.Addr() == nil || srv.TLSAddr() == nil || srv.MetricsAddr() == nil {
		select {
		case err := <-served:
			t.Fatalf("ListenAndServe: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("ListenAndServe did not start serving all three addresses")
		}
	}
	c := secDial(t, srv.Config.Addr, nil)
	secCmd(t, c, "QUIT", "221")
	c = secDial(t, srv.Config.TLSAddr, pki.client)
	secCmd(t, c, "QUIT", "221")
	mc, err := smtpd.DialMetrics(metricsAddr, key)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := mc.Uptime(t.Context()); err != nil {
		t.Errorf("management protocol: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, smtpd.ErrServerClosed) {
		t.Errorf("ListenAndServe after Shutdown: %v, want ErrServerClosed", err)
	}
	for _, addr := range []string{srv.Config.Addr, srv.Config.TLSAddr} {
		if l, err := net.Listen("tcp", addr); err != nil {
			t.Errorf("%s is still bound after Shutdown: %v", addr, err)
		} else {
			l.Close()
		}
	}
	if pc, err := net.ListenPacket("udp", metricsAddr); err != nil {
		t.Errorf("%s is still bound after Shutdown: %v", metricsAddr, err)
	} else {
		pc.Close()
	}
}
