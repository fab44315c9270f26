package webaddr

import (
	"net"
	"testing"
)

func TestResolve(t *testing.T) {
	for in, want := range map[string]string{
		"8025":           "127.0.0.1:8025",
		":8025":          "127.0.0.1:8025",
		":0":             "127.0.0.1:0",
		"127.0.0.1:0":    "127.0.0.1:0",
		"0.0.0.0:8025":   "0.0.0.0:8025",
		"[::]:8025":      "[::]:8025",
		"[::1]:8025":     "[::1]:8025",
		"localhost:8025": "localhost:8025",
	} {
		if got := Resolve(in); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8025": true,
		"127.1.2.3:1":    true,
		"[::1]:8025":     true,
		"0.0.0.0:8025":   false,
		"[::]:8025":      false,
		"192.0.2.1:80":   false,
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := IsLoopback(tcp); got != want {
			t.Errorf("IsLoopback(%s) = %v, want %v", addr, got, want)
		}
	}
}
