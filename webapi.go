package smtpd

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tpe-protos/smtpd/internal/mimemsg"
)

// The JSON API of the HTTP view, version 1 (docs/http-api.md).

// Page sizes of GET /api/v1/messages.
const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// messageList is the answer to GET /api/v1/messages.
type messageList struct {
	Total    int              `json:"total"`   // messages listed in all
	Matched  int              `json:"matched"` // those matching the query
	Start    int              `json:"start"`
	Messages []messageSummary `json:"messages"` // newest first
}

// listMessages is GET /api/v1/messages?query=&start=&limit=.
func (v *webView) listMessages(w http.ResponseWriter, r *http.Request) {
	q, ok := v.listQuery(w, r)
	if !ok {
		return
	}
	entries, matched, total := v.index.page(q.query, q.start, q.limit)
	list := messageList{Total: total, Matched: matched, Start: q.start, Messages: make([]messageSummary, len(entries))}
	for i, e := range entries {
		list.Messages[i] = e.messageSummary
	}
	writeJSON(w, http.StatusOK, list)
}

// listQuery is what a list request asks for.
type listQuery struct {
	query        string
	start, limit int
}

// listQuery reads a list request's parameters and waits for the index;
// it answers the request itself and returns false when it cannot go on.
func (v *webView) listQuery(w http.ResponseWriter, r *http.Request) (listQuery, bool) {
	var q listQuery
	var ok bool
	if q.start, ok = intParam(r, "start", 0, 0, maxIndexed); !ok {
		writeError(w, http.StatusBadRequest, "start must be an integer from 0 to "+strconv.Itoa(maxIndexed))
		return q, false
	}
	if q.limit, ok = intParam(r, "limit", defaultPageSize, 1, maxPageSize); !ok {
		writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(maxPageSize))
		return q, false
	}
	q.query = strings.TrimSpace(r.URL.Query().Get("query"))
	return q, v.waitIndex(w, r)
}

// waitIndex waits for the first scan of the Maildir; false when the client
// went away first.
func (v *webView) waitIndex(w http.ResponseWriter, r *http.Request) bool {
	if !v.index.wait(r.Context().Done()) {
		writeError(w, http.StatusServiceUnavailable, "the Maildir is still being read")
		return false
	}
	return true
}

// entry returns the entry the request's {id} names, or answers 404.
func (v *webView) entry(w http.ResponseWriter, r *http.Request) *indexEntry {
	if !v.waitIndex(w, r) {
		return nil
	}
	e := v.index.lookup(r.PathValue("id"))
	if e == nil {
		writeError(w, http.StatusNotFound, "no message with id "+strconv.Quote(r.PathValue("id")))
	}
	return e
}

// readEntry returns the stored bytes of the request's message, or answers
// with the error.
func (v *webView) readMessage(w http.ResponseWriter, r *http.Request) (*indexEntry, []byte) {
	e := v.entry(w, r)
	if e == nil {
		return nil, nil
	}
	raw, err := v.index.read(e)
	switch {
	case errors.Is(err, errGone):
		v.events.publish("deleted", deletedEvent{IDs: []string{e.ID}}, false)
		writeError(w, http.StatusNotFound, "message "+e.ID+" is no longer in the Maildir")
		return nil, nil
	case err != nil:
		v.srv.log.Error("smtpd: HTTP view: reading a message", "file", v.index.fileOf(e), "err", err)
		writeError(w, http.StatusInternalServerError, "cannot read the message")
		return nil, nil
	}
	return e, raw
}

// messageDetail is the answer to GET /api/v1/messages/{id}.
type messageDetail struct {
	messageSummary
	// Attachments lists the attachments (the summary's count is hidden
	// by this field of the same JSON name).
	Attachments []attachmentInfo `json:"attachments"`
	Headers     []apiHeaderField `json:"headers"` // in order, decoded
	Text        string           `json:"text"`
	HTML        string           `json:"html"`
	Parts       []partInfo       `json:"parts"`
	// PartsTruncated says the message had more parts than are read.
	PartsTruncated bool   `json:"parts_truncated,omitempty"`
	Raw            string `json:"raw"` // the link to the stored bytes
	// Envelope and Transcript are there for a message this process
	// received.
	Envelope   *receipt         `json:"envelope,omitempty"`
	Transcript []transcriptLine `json:"transcript,omitempty"`
}

type apiHeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type attachmentInfo struct {
	Part        int    `json:"part"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"` // decoded
	URL         string `json:"url"`
}

type partInfo struct {
	Index       int    `json:"index"`
	ContentType string `json:"content_type"`
	Charset     string `json:"charset,omitempty"`
	Disposition string `json:"disposition,omitempty"`
	Filename    string `json:"filename,omitempty"`
	ContentID   string `json:"content_id,omitempty"`
	Size        int    `json:"size"` // decoded
	URL         string `json:"url"`
}

type transcriptLine struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"` // "C", "S" or "*"
	Text string    `json:"text"`
}

// getMessage is GET /api/v1/messages/{id}.
func (v *webView) getMessage(w http.ResponseWriter, r *http.Request) {
	e, raw := v.readMessage(w, r)
	if e == nil {
		return
	}
	writeJSON(w, http.StatusOK, v.detail(e, raw))
}

// detail reads a message for the API and the message page.
func (v *webView) detail(e *indexEntry, raw []byte) *messageDetail {
	d := &messageDetail{messageSummary: e.messageSummary, Raw: messageURL(e.ID) + "/raw",
		Attachments: []attachmentInfo{}, Headers: []apiHeaderField{}, Parts: []partInfo{}}
	for _, f := range mimemsg.HeaderFields(raw) {
		d.Headers = append(d.Headers, apiHeaderField{f.Name, mimemsg.DecodeHeader(f.Value)})
	}
	if msg, err := mimemsg.Parse(raw); err == nil {
		// The fields in full, where the list clips them.
		d.From, d.Subject = decodeAddresses(msg.Header.Get("From")), msg.Subject()
		d.To = orEmpty(splitAddresses(msg.Header.Get("To")))
		d.Cc = orEmpty(splitAddresses(msg.Header.Get("Cc")))
		d.Text, d.HTML = msg.Text(), msg.HTML()
		d.PartsTruncated = msg.Truncated
		for _, p := range msg.Parts {
			url := partURL(e.ID, p.Index)
			d.Parts = append(d.Parts, partInfo{Index: p.Index, ContentType: p.ContentType, Charset: p.Charset,
				Disposition: p.Disposition, Filename: p.Filename, ContentID: p.ContentID, Size: len(p.Body), URL: url})
			if p.IsAttachment() {
				d.Attachments = append(d.Attachments, attachmentInfo{Part: p.Index, Name: p.Filename,
					ContentType: p.ContentType, Size: len(p.Body), URL: url})
			}
		}
	}
	if rc := v.index.receivedOf(e); rc != nil {
		d.Envelope = rc
		for _, l := range rc.Transcript() {
			d.Transcript = append(d.Transcript, transcriptLine{Time: l.Time, Kind: string(rune(l.Kind)), Text: l.Text})
		}
	}
	return d
}

func messageURL(id string) string     { return "/api/v1/messages/" + id }
func partURL(id string, n int) string { return messageURL(id) + "/part/" + strconv.Itoa(n) }

// sandboxed is the Content-Security-Policy of what the API serves from a
// message (raw source, parts): a document opened from it runs no script,
// loads nothing and has an origin of its own, so a hostile attachment
// cannot act on the view.
const sandboxed = "default-src 'none'; sandbox"

// rawMessage is GET /api/v1/messages/{id}/raw: the stored file.
func (v *webView) rawMessage(w http.ResponseWriter, r *http.Request) {
	_, raw := v.readMessage(w, r)
	if raw == nil {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Security-Policy", sandboxed)
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	w.Write(raw)
}

// messagePart is GET /api/v1/messages/{id}/part/{n}: the decoded bytes of
// leaf part n (depth first, from 0), with its content type and file name.
func (v *webView) messagePart(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "the part number must be an integer from 0")
		return
	}
	e, raw := v.readMessage(w, r)
	if e == nil {
		return
	}
	msg, err := mimemsg.Parse(raw)
	if err != nil || n >= len(msg.Parts) {
		writeError(w, http.StatusNotFound, "message "+e.ID+" has no part "+strconv.Itoa(n))
		return
	}
	p := msg.Parts[n]
	h := w.Header()
	ctype := p.ContentType
	if p.Charset != "" {
		ctype = mime.FormatMediaType(ctype, map[string]string{"charset": p.Charset})
	}
	h.Set("Content-Type", ctype)
	if p.Filename != "" {
		disposition := "inline"
		if p.IsAttachment() {
			disposition = "attachment"
		}
		if cd := mime.FormatMediaType(disposition, map[string]string{"filename": p.Filename}); cd != "" {
			h.Set("Content-Disposition", cd)
		}
	}
	h.Set("Content-Security-Policy", sandboxed)
	h.Set("Content-Length", strconv.Itoa(len(p.Body)))
	w.Write(p.Body)
}

// deletedEvent announces deleted messages on the event stream.
type deletedEvent struct {
	IDs []string `json:"ids"`
}

// deleteResult is the answer to a DELETE.
type deleteResult struct {
	Deleted int `json:"deleted"`
}

// refuseCrossSite answers 403 to a request a browser says comes from
// another site (Sec-Fetch-Site, Origin), and reports whether it did.
func (v *webView) refuseCrossSite(w http.ResponseWriter, r *http.Request) bool {
	if err := v.csrf.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-site request refused: "+err.Error())
		return true
	}
	return false
}

// deleteMessage is DELETE /api/v1/messages/{id}: it removes the message's
// file from its mailbox. A message stored for several mailboxes is one
// listed message per mailbox: the others stay.
func (v *webView) deleteMessage(w http.ResponseWriter, r *http.Request) {
	if v.refuseCrossSite(w, r) {
		return
	}
	e := v.entry(w, r)
	if e == nil {
		return
	}
	if err := v.index.remove(e); err != nil {
		v.srv.log.Error("smtpd: HTTP view: deleting a message", "file", v.index.fileOf(e), "err", err)
		writeError(w, http.StatusInternalServerError, "cannot delete the message")
		return
	}
	v.events.publish("deleted", deletedEvent{IDs: []string{e.ID}}, false)
	writeJSON(w, http.StatusOK, deleteResult{Deleted: 1})
}

// deleteAll is DELETE /api/v1/messages: it removes every listed message.
func (v *webView) deleteAll(w http.ResponseWriter, r *http.Request) {
	if v.refuseCrossSite(w, r) || !v.waitIndex(w, r) {
		return
	}
	var ids []string
	var failed error
	for _, e := range v.index.all() {
		if err := v.index.remove(e); err != nil {
			failed = err
			continue
		}
		ids = append(ids, e.ID)
	}
	if len(ids) > 0 {
		v.events.publish("deleted", deletedEvent{IDs: ids}, false)
	}
	if failed != nil {
		v.srv.log.Error("smtpd: HTTP view: deleting messages", "err", failed)
		writeError(w, http.StatusInternalServerError, "deleted "+strconv.Itoa(len(ids))+" messages; others could not be deleted")
		return
	}
	writeJSON(w, http.StatusOK, deleteResult{Deleted: len(ids)})
}
