package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/tpe-protos/smtpd/internal/atomicfile"
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
		if leaf != nil && now.Add(autoCertRenew).Before(leaf.NotAfter) && leaf.VerifyHostname(certHostname(hostname)) == nil {
			return cert, nil
		}
	}
	certPEM, keyPEM, err := selfSignedCert(hostname, now)
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

// certHostname is the name a certificate for hostname must match: an
// address literal "[192.0.2.1]" is matched as its IP address.
func certHostname(hostname string) string {
	return strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(hostname, "["), "]"), "IPv6:")
}

// selfSignedCert makes a self-signed certificate for hostname and returns it
// and its key in PEM.
func selfSignedCert(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"smtpd self-signed"}},
		NotBefore:             now.Add(-time.Hour), // some slack for clocks behind ours
		NotAfter:              now.Add(autoCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(certHostname(hostname)); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if hostname != "localhost" {
		tmpl.DNSNames = append([]string{hostname}, tmpl.DNSNames...)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
