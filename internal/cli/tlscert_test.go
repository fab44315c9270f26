package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	cert, err := loadOrCreateCert(dir, "mx.test", now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("no leaf")
	}
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	for _, name := range []string{"mx.test", "localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate not valid for %s: %v", name, err)
		}
	}
	if life := leaf.NotAfter.Sub(now); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("certificate valid for %v, want about a year", life)
	}
	fi, err := os.Stat(filepath.Join(dir, autoKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	first, _ := os.ReadFile(filepath.Join(dir, autoCertFile))

	// Reused while valid and for the same name.
	again, err := loadOrCreateCert(dir, "mx.test", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate[0], cert.Certificate[0]) {
		t.Error("a second start made a new certificate")
	}
	// Made anew near its end, or for another name.
	for _, tc := range []struct {
		host string
		at   time.Time
	}{{"mx.test", now.Add(365*24*time.Hour - time.Hour)}, {"other.test", now}} {
		renewed, err := loadOrCreateCert(dir, tc.host, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(renewed.Certificate[0], cert.Certificate[0]) {
			t.Errorf("%s at %v: the old certificate was kept", tc.host, tc.at)
		}
		if err := renewed.Leaf.VerifyHostname(tc.host); err != nil {
			t.Error(err)
		}
	}
	if now, _ := os.ReadFile(filepath.Join(dir, autoCertFile)); bytes.Equal(now, first) {
		t.Error("the certificate file was not replaced")
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmp) > 0 {
		t.Errorf("temporary files left: %q", tmp)
	}
}
