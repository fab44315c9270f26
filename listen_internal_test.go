package smtpd

import (
	"errors"
	"io"
	"testing"
)

// blockingEndpoint serves until it is closed, then returns errClosed.
type blockingEndpoint struct{ closed chan struct{} }

var errClosed = errors.New("closed")

func (b blockingEndpoint) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
	}
	return nil
}

func (b blockingEndpoint) serve() error {
	<-b.closed
	return errClosed
}

// TestServeAllFirstError: when serving one endpoint fails, serveAll closes
// the others, waits for them and returns the first error.
func TestServeAllFirstError(t *testing.T) {
	failure := errors.New("accept: broken")
	a, b := blockingEndpoint{make(chan struct{})}, blockingEndpoint{make(chan struct{})}
	err := serveAll([]boundEndpoint{
		{a, a.serve},
		{io.NopCloser(nil), func() error { return failure }},
		{b, b.serve},
	})
	if err != failure {
		t.Errorf("serveAll = %v, want %v", err, failure)
	}
	for i, e := range []blockingEndpoint{a, b} {
		select {
		case <-e.closed:
		default:
			t.Errorf("endpoint %d was not closed", i)
		}
	}
}
