package smtpd

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The event stream of the HTTP view (GET /api/v1/events) is Server-Sent
// Events (the WHATWG HTML standard, "Server-sent events"): one "message"
// event per stored message, one "deleted" event per deletion and, for
// subscribers that ask with ?trace=1, one "trace" event per line of the
// session trace, as it happens.
//
// Publishers are sessions, on their own goroutines: publishing must never
// wait for a browser. Each subscriber has a queue of at most
// maxQueuedEvents events; what does not fit is dropped, and the subscriber
// is told how many with a "dropped" event before the next one it gets.

// Limits of the event stream.
const (
	maxQueuedEvents = 256 // per subscriber
	maxSubscribers  = 64  // event streams open at once
	// keepAliveEvery is how often an idle stream gets a comment line, so
	// that proxies and browsers do not time it out and a closed browser
	// is noticed.
	keepAliveEvery = 20 * time.Second
)

// eventHub fans events out to the open event streams. Its zero value is
// ready; it refuses subscribers once closed.
type eventHub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	// tracers counts the subscribers that want the trace: while it is
	// zero, the tracer builds no line for the HTTP view.
	tracers atomic.Int32
}

// subscriber is one open event stream.
type subscriber struct {
	trace bool

	mu      sync.Mutex
	queue   [][]byte // encoded events, oldest first
	dropped int      // events dropped since the last delivered batch
	closed  bool     // the hub closed: the stream ends

	wake chan struct{} // has a value when there is something to do
}

// subscribe adds a subscriber, or returns nil when the hub is closed or
// full.
func (h *eventHub) subscribe(trace bool) *subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.subs) >= maxSubscribers {
		return nil
	}
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	s := &subscriber{trace: trace, wake: make(chan struct{}, 1)}
	h.subs[s] = struct{}{}
	if trace {
		h.tracers.Add(1)
	}
	return s
}

func (h *eventHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if s.trace {
		h.tracers.Add(-1)
	}
}

// close ends every stream and refuses new ones.
func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.notify()
	}
}

// tracing reports whether a subscriber wants the session trace. A nil hub
// has none.
func (h *eventHub) tracing() bool {
	return h != nil && h.tracers.Load() > 0
}

// publish sends an event named name with data encoded as JSON to every
// subscriber (only to those that want the trace, for trace events).
func (h *eventHub) publish(name string, data any, trace bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	ev := encodeEvent(name, data)
	for s := range h.subs {
		if trace && !s.trace {
			continue
		}
		s.push(ev)
	}
}

// encodeEvent returns one event in the text/event-stream format. JSON
// never holds a raw line break, so the data is one "data:" line.
func encodeEvent(name string, data any) []byte {
	b, err := marshalJSON(data)
	if err != nil {
		b = []byte(`{}`)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	ev := make([]byte, 0, len(name)+len(b)+16)
	ev = append(ev, "event: "...)
	ev = append(ev, name...)
	ev = append(ev, "\ndata: "...)
	ev = append(ev, b...)
	return append(ev, "\n\n"...)
}

// push queues an event, or counts it as dropped when the queue is full.
func (s *subscriber) push(ev []byte) {
	s.mu.Lock()
	if len(s.queue) >= maxQueuedEvents {
		s.dropped++
	} else {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	s.notify()
}

func (s *subscriber) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events, with a "dropped" event first when some
// were lost, and whether the stream has ended.
func (s *subscriber) take() (events [][]byte, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	events, s.queue = s.queue, nil
	if s.dropped > 0 {
		marker := encodeEvent("dropped", struct {
			Events int `json:"events"`
		}{s.dropped})
		events = append([][]byte{marker}, events...)
		s.dropped = 0
	}
	return events, s.closed
}

// serveEvents is GET /api/v1/events: an event stream until the client goes
// away or the server shuts down. ?trace=1 adds the session trace.
func (v *webView) serveEvents(w http.ResponseWriter, r *http.Request) {
	trace, ok := boolParam(r, "trace")
	if !ok {
		writeError(w, http.StatusBadRequest, "trace must be 0 or 1")
		return
	}
	if r.Method == http.MethodHead { // the headers only: no stream to wait on
		w.Header().Set("Content-Type", "text/event-stream")
		return
	}
	sub := v.events.subscribe(trace)
	if sub == nil {
		writeError(w, http.StatusServiceUnavailable, "too many event streams open, or the server is shutting down")
		return
	}
	defer v.events.unsubscribe(sub)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// "ready" says the subscription is in place: whatever happens from
	// now on will be in the stream.
	if !writeEvents(w, rc, [][]byte{encodeEvent("ready", struct{}{})}) {
		return
	}
	keepAlive := time.NewTicker(keepAliveEvery)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			if !writeEvents(w, rc, [][]byte{[]byte(": keep-alive\n\n")}) {
				return
			}
		case <-sub.wake:
			events, closed := sub.take()
			if !writeEvents(w, rc, events) || closed {
				return
			}
		}
	}
}

// writeEvents writes and flushes events; a browser that does not take them
// within streamWriteTimeout ends the stream.
func writeEvents(w http.ResponseWriter, rc *http.ResponseController, events [][]byte) bool {
	rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	for _, ev := range events {
		if _, err := w.Write(ev); err != nil {
			return false
		}
	}
	return rc.Flush() == nil
}

// traceEvent is a line of the session trace as the event stream sends it.
type traceEvent struct {
	Time    string `json:"time"`    // 15:04:05.000, as in the trace
	Session string `json:"session"` // the session number of the trace
	// Kind is "client" (C:), "server" (S:), "event" (*) or "explain"
	// (the ↳ line after a reply); Class is a server line's reply class,
	// 2 to 5.
	Kind  string `json:"kind"`
	Class int    `json:"class,omitempty"`
	Text  string `json:"text"`
}

// traceLine publishes a trace line, given as the tracer wrote it (colored
// or not), to the subscribers that want the trace.
func (h *eventHub) traceLine(now time.Time, session, text string) {
	if !h.tracing() {
		return
	}
	text = stripANSI(text)
	ev := traceEvent{Time: now.Format("15:04:05.000"), Session: session, Text: text}
	switch {
	case strings.HasPrefix(text, "C: "):
		ev.Kind = "client"
	case strings.HasPrefix(text, "S: "):
		ev.Kind = "server"
		if len(text) > 3 && '2' <= text[3] && text[3] <= '5' {
			ev.Class = int(text[3] - '0')
		}
	case strings.HasPrefix(strings.TrimLeft(text, " "), "↳"):
		ev.Kind = "explain"
	default:
		ev.Kind = "event"
	}
	h.publish("trace", ev, true)
}

// stripANSI removes the ANSI color sequences (ESC [ … m) the trace's palette
// adds; the page colors lines by their kind instead, and shows them as
// text, never as markup.
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], 'm')
		if end < 0 {
			return b.String()
		}
		s = s[i+end+1:]
	}
}
