package smtpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpe-protos/smtpd/internal/webaddr"
)

// The HTTP view: a web page of the stored mail and of live sessions, a JSON
// API (docs/http-api.md), an event stream and the Prometheus metrics, all
// from one http.Handler (Server.Handler), which ServeWeb serves on a
// listener of its own and an embedding program may mount in its own mux.

// Timeouts of the HTTP listener that ServeWeb runs (SECURITY.md).
const (
	webReadHeaderTimeout = 10 * time.Second
	webReadTimeout       = 30 * time.Second
	// webWriteTimeout bounds each response; the event stream, which
	// lasts, moves its own deadline before each write instead
	// (streamWriteTimeout).
	webWriteTimeout    = 2 * time.Minute
	webIdleTimeout     = 2 * time.Minute
	webMaxHeaderBytes  = 64 << 10
	streamWriteTimeout = 30 * time.Second
)

// webFront is the server's side of the HTTP view: the event hub the
// sessions publish to, the view once Handler made it, and the HTTP servers
// ServeWeb runs.
type webFront struct {
	events eventHub
	once   sync.Once
	view   atomic.Pointer[webView]

	mu      sync.Mutex
	servers map[*http.Server]struct{}
	addr    net.Addr
	closed  bool
}

// Handler returns the HTTP view of the server, to serve with ServeWeb or to
// mount in a program's own mux:
//
//	/                         the list of stored messages, with search
//	/messages/{id}            a message: text, HTML, headers, raw source,
//	                          attachments and session transcript
//	/live                     the session trace, live, for a classroom
//	/api/v1/...               the JSON API (docs/http-api.md)
//	/api/v1/events            Server-Sent Events: stored messages, deletions,
//	                          and with ?trace=1 the session trace
//	/metrics                  Prometheus metrics
//
// The view lists the messages of the Maildir tree, those stored before the
// server started included; the first call starts reading them. It has no
// login: serve it on a loopback address, or behind something that
// authenticates. Requests that change anything (DELETE) are refused when a
// browser says they come from another site.
//
// A server whose Config does not check out gets a handler that answers
// every request with 500 and the reason.
func (srv *Server) Handler() http.Handler {
	if err := srv.init(); err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusInternalServerError, err.Error())
		})
	}
	srv.web.once.Do(func() {
		v := newWebView(srv)
		srv.web.view.Store(v)
		go func() {
			if err := v.index.scan(); err != nil {
				srv.log.Error("smtpd: HTTP view: reading the Maildir", "err", err)
			}
		}()
	})
	return srv.web.view.Load().handler
}

// ServeWeb serves the HTTP view (Handler) on l until Shutdown or Close, and
// then returns ErrServerClosed. On a loopback address it answers only
// requests whose Host is a loopback name or address, which stops a web page
// from reaching it through DNS rebinding; on any other address it logs a
// warning, since the view has no login.
func (srv *Server) ServeWeb(l net.Listener) error {
	if err := srv.init(); err != nil {
		l.Close()
		return err
	}
	h := srv.Handler()
	loopback := webaddr.IsLoopback(l.Addr())
	if loopback {
		h = loopbackHostsOnly(h)
	} else {
		srv.log.Warn("smtpd: the HTTP view listens on a non-loopback address; it has no login: anyone who reaches it reads and deletes the mail", "addr", l.Addr().String())
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: webReadHeaderTimeout,
		ReadTimeout:       webReadTimeout,
		WriteTimeout:      webWriteTimeout,
		IdleTimeout:       webIdleTimeout,
		MaxHeaderBytes:    webMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(srv.log.Handler(), slog.LevelWarn),
	}
	if !srv.web.track(hs, l.Addr()) || srv.shuttingDown() {
		srv.web.untrack(hs)
		l.Close()
		return ErrServerClosed
	}
	defer srv.web.untrack(hs)
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || srv.shuttingDown() {
		return ErrServerClosed
	}
	return err
}

// HTTPAddr returns the address of the first listener the server served
// with ServeWeb, or nil before ServeWeb began.
func (srv *Server) HTTPAddr() net.Addr {
	srv.web.mu.Lock()
	defer srv.web.mu.Unlock()
	return srv.web.addr
}

// webEndpoint binds Config.HTTPAddr for ListenAndServe (an address without
// a host is loopback, see internal/webaddr) and serves the HTTP view on it.
func (srv *Server) webEndpoint(addr string) (boundEndpoint, error) {
	l, err := webaddr.Listen(addr)
	if err != nil {
		return boundEndpoint{}, err
	}
	// The view now, before any endpoint is served: it keeps the
	// transcripts of every session from the first.
	srv.Handler()
	return boundEndpoint{l, func() error { return srv.ServeWeb(l) }}, nil
}

// track adds an HTTP server; it refuses once the server is closing.
func (w *webFront) track(hs *http.Server, addr net.Addr) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.servers == nil {
		w.servers = make(map[*http.Server]struct{})
	}
	w.servers[hs] = struct{}{}
	if w.addr == nil {
		w.addr = addr
	}
	return true
}

func (w *webFront) untrack(hs *http.Server) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.servers, hs)
}

// shutdown ends the event streams and stops the HTTP servers gracefully:
// requests under way finish, within ctx.
func (w *webFront) shutdown(ctx context.Context) error {
	return w.stop(func(hs *http.Server) error { return hs.Shutdown(ctx) })
}

// close ends the event streams and closes the HTTP servers at once.
func (w *webFront) close() error {
	return w.stop((*http.Server).Close)
}

// stop refuses new HTTP servers, ends the event streams and stops each
// HTTP server with stopServer.
func (w *webFront) stop(stopServer func(*http.Server) error) error {
	w.mu.Lock()
	w.closed = true
	servers := make([]*http.Server, 0, len(w.servers))
	for hs := range w.servers {
		servers = append(servers, hs)
	}
	w.mu.Unlock()
	w.events.close()
	var errs []error
	for _, hs := range servers {
		errs = append(errs, stopServer(hs))
	}
	return errors.Join(errs...)
}

// stored tells the view about a message the server has just stored: it is
// indexed and announced on the event stream before the client gets its 250.
func (w *webFront) stored(m *Message) {
	v := w.view.Load()
	if v == nil {
		return
	}
	for _, e := range v.index.add(m) {
		w.events.publish("message", e.messageSummary, false)
	}
}

// keepsTranscripts reports whether sessions must record their dialogue for
// the HTTP view.
func (w *webFront) keepsTranscripts() bool { return w.view.Load() != nil }

// loopbackHostsOnly refuses requests whose Host header is not a loopback
// name or address: a page on another site that rebinds its own name to
// 127.0.0.1 would otherwise read the mail with the browser's help.
func loopbackHostsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, "this server answers only to a loopback host name (localhost, 127.0.0.1, [::1])")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// apiError is the body of every error response.
type apiError struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// writeError answers with status and a JSON body saying why.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg, Status: status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshalJSON(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the response","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// marshalJSON encodes v on one line, ending in a newline, with <, > and &
// as they are: the JSON is served as application/json, never as HTML,
// and addresses are full of angle brackets.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return b.Bytes(), err
}

// intParam reads the integer query parameter name, def when absent; ok is
// false when it is not an integer in [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (n int, ok bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && lo <= n && n <= hi
}

// boolParam reads the query parameter name as 0/1 (or false/true).
func boolParam(r *http.Request, name string) (v, ok bool) {
	switch r.URL.Query().Get(name) {
	case "", "0", "false":
		return false, true
	case "1", "true":
		return true, true
	}
	return false, false
}

// methods routes a request by method and answers any other with 405 and
// the Allow header. GET handlers answer HEAD too.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if h := m[method]; h != nil {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m)+1)
	for _, known := range []string{http.MethodGet, http.MethodDelete} {
		if m[known] != nil {
			allow = append(allow, known)
			if known == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed here; allowed: "+strings.Join(allow, ", "))
}

// webView is the HTTP view: the index of the Maildir and the handler.
type webView struct {
	srv     *Server
	index   *mailIndex
	events  *eventHub
	csrf    *http.CrossOriginProtection
	handler http.Handler
}

func newWebView(srv *Server) *webView {
	v := &webView{
		srv:    srv,
		index:  newMailIndex(srv.maildirRoot),
		events: &srv.web.events,
		csrf:   http.NewCrossOriginProtection(),
	}
	mux := http.NewServeMux()
	mux.Handle("/{$}", methods{http.MethodGet: v.listPage})
	mux.Handle("/messages/{id}", methods{http.MethodGet: v.messagePage})
	mux.Handle("/messages/{id}/html", methods{http.MethodGet: v.htmlBody})
	mux.Handle("/live", methods{http.MethodGet: v.livePage})
	mux.Handle("/static/", methods{http.MethodGet: staticFiles()})
	mux.Handle("/api/v1/messages", methods{http.MethodGet: v.listMessages, http.MethodDelete: v.deleteAll})
	mux.Handle("/api/v1/messages/{id}", methods{http.MethodGet: v.getMessage, http.MethodDelete: v.deleteMessage})
	mux.Handle("/api/v1/messages/{id}/raw", methods{http.MethodGet: v.rawMessage})
	mux.Handle("/api/v1/messages/{id}/part/{n}", methods{http.MethodGet: v.messagePart})
	mux.Handle("/api/v1/events", methods{http.MethodGet: v.serveEvents})
	mux.Handle("/metrics", methods{http.MethodGet: prometheusHandler(srv).ServeHTTP})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such page: "+r.URL.Path)
	})
	v.handler = commonHeaders(mux)
	return v
}

// commonHeaders adds the headers every response carries: no MIME sniffing,
// no Referer sent from the view's pages (the ids would leak).
func commonHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// maildirRoot returns the Maildir's os.Root, shared with deliveries.
func (srv *Server) maildirRoot() (*os.Root, error) {
	return srv.store.sharedRoot()
}

// sharedRoot returns the root, opening it (and creating its directory) if
// no delivery has yet.
func (md *maildir) sharedRoot() (*os.Root, error) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.openRoot(); err != nil {
		return nil, err
	}
	return md.root, nil
}
