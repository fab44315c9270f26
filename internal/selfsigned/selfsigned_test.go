package selfsigned

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct{ hostname, name string }{
		{"mx.test", "mx.test"},
		{"[192.0.2.1]", "192.0.2.1"},
		{"[IPv6:2001:db8::1]", "2001:db8::1"},
	} {
		certPEM, keyPEM, err := New(tc.hostname, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{Name(tc.hostname), "localhost", "127.0.0.1", "::1"} {
			if err := cert.Leaf.VerifyHostname(name); err != nil {
				t.Errorf("%s: %v", tc.hostname, err)
			}
		}
		if Name(tc.hostname) != tc.name {
			t.Errorf("Name(%q) = %q, want %q", tc.hostname, Name(tc.hostname), tc.name)
		}
	}
}
