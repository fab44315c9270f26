package cli

import (
	"crypto/tls"
	"path/filepath"
	"time"

	"github.com/tpe-protos/smtpd/internal/atomicfile"
	"github.com/tpe-protos/smtpd/internal/selfsigned"
)

// The files of "-tls auto", in the data directory.
const (
	autoCertFile = "tls-cert.pem"
	autoKeyFile  = "tls-key.pem"
)

// autoCertLifetime is how long a generated certificate is valid; it is made
// anew once it is within autoCertRenew of its end.
const (
	autoCertLifetime = 365 * 24 * time.Hour
	autoCertRenew    = 24 * time.Hour
)

// loadOrCreateCert returns the certificate of "-tls auto": the one in dir
// if it is there, valid for a day more and for hostname; otherwise a new
// self-signed one (ECDSA P-256, for hostname, localhost, 127.0.0.1 and ::1,
// valid a year), saved in dir with the key readable by its owner only.
// Clients must be told to trust it (or not to check): it is for tests,
// classrooms and private networks, not for the open Internet.
func loadOrCreateCert(dir, hostname string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, autoCertFile), filepath.Join(dir, autoKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf := cert.Leaf
		if leaf != nil && now.Add(autoCertRenew).Before(leaf.NotAfter) && leaf.VerifyHostname(selfsigned.Name(hostname)) == nil {
			return cert, nil
		}
	}
	certPEM, keyPEM, err := selfsigned.New(hostname, now, autoCertLifetime)
	if err != nil {
		return tls.Certificate{}, err
	}
	// The key first, so that a crash leaves no certificate without its
	// key; each file whole or not at all (temp file and rename).
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
