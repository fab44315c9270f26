package smtpd

import (
	"bytes"
	"embed"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The web page of the HTTP view: server-rendered with html/template, a
// little plain JavaScript for live updates, every asset embedded. The page
// makes no request to any other site. Links are relative, so the view also
// works mounted below a path prefix (http.StripPrefix).

//go:embed web/templates/*.html web/static
var webFiles embed.FS

// pageCSP is the Content-Security-Policy of the view's pages: scripts,
// styles and frames from the view itself only, nothing inline.
const pageCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// mailCSP is the policy of a message's HTML body in its iframe: no script
// (the iframe's sandbox forbids them too), no form, and nothing loaded from
// elsewhere, so that opening a message does not tell its sender (tracking
// pixels); images the message carries (cid:, data:) still show.
// remoteMailCSP, after the "Load remote content" button, lets images,
// styles, fonts and media come from anywhere, scripts still not.
const (
	mailCSP       = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
	remoteMailCSP = "default-src 'none'; img-src * data:; style-src * 'unsafe-inline'; font-src * data:; media-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)

// How much of the raw source the message page shows; the raw link has all.
const maxRawShown = 1 << 20

var pageFuncs = template.FuncMap{
	"join": func(list []string) string { return strings.Join(list, ", ") },
	"size": formatSize,
	"iso":  func(t time.Time) string { return t.Format(time.RFC3339) },
	"when": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"clock": func(t time.Time) string {
		return t.Local().Format("15:04:05.000")
	},
	"lineClass": transcriptClass,
}

// pages are the templates, each with the layout.
var pages = map[string]*template.Template{
	"list":    parsePage("list.html"),
	"message": parsePage("message.html"),
	"live":    parsePage("live.html"),
}

func parsePage(name string) *template.Template {
	return template.Must(template.New(name).Funcs(pageFuncs).ParseFS(webFiles, "web/templates/layout.html", "web/templates/"+name))
}

// pageData is what every page's layout needs.
type pageData struct {
	Title  string
	Page   string // "list", "message" or "live"
	Root   string // the relative path to the view's root: "" or "../"
	Script string // the page's script in static/
}

// renderPage writes a page, rendered whole before anything is sent so that
// an error is still a clean 500.
func (v *webView) renderPage(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := pages[name].ExecuteTemplate(&b, "layout", data); err != nil {
		v.srv.log.Error("smtpd: HTTP view: rendering a page", "page", name, "err", err)
		writeError(w, http.StatusInternalServerError, "cannot render the page")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// listPage is GET /: the newest messages, or those matching ?query=.
func (v *webView) listPage(w http.ResponseWriter, r *http.Request) {
	q, ok := v.listQuery(w, r)
	if !ok {
		return
	}
	entries, matched, total := v.index.page(q.query, q.start, q.limit)
	data := struct {
		pageData
		Query          string
		Start          int
		Matched, Total int
		Messages       []messageSummary
		Live           bool // new messages go on top of this page
		Prev, Next     string
	}{
		pageData: pageData{Title: "Messages", Page: "list", Script: "app.js"},
		Query:    r.URL.Query().Get("query"), Start: q.start, Matched: matched, Total: total,
		Live: q.query == "" && q.start == 0,
	}
	for _, e := range entries {
		data.Messages = append(data.Messages, e.messageSummary)
	}
	if q.start > 0 {
		data.Prev = pageLink(r, max(q.start-q.limit, 0))
	}
	if q.start+len(entries) < matched {
		data.Next = pageLink(r, q.start+q.limit)
	}
	v.renderPage(w, "list", data)
}

// pageLink is the list page's link to the page from start on, keeping the
// other parameters.
func pageLink(r *http.Request, start int) string {
	params := r.URL.Query()
	params.Set("start", strconv.Itoa(start))
	return "?" + params.Encode()
}

// messagePage is GET /messages/{id}.
func (v *webView) messagePage(w http.ResponseWriter, r *http.Request) {
	e, raw := v.readMessage(w, r)
	if e == nil {
		return
	}
	shown := raw[:min(len(raw), maxRawShown)]
	data := struct {
		pageData
		Message  *messageDetail
		Raw      string
		RawCut   bool
		RawShown int
	}{
		pageData: pageData{Title: e.Subject, Page: "message", Root: "../", Script: "app.js"},
		Message:  v.detail(e, raw),
		Raw:      strings.ToValidUTF8(string(shown), "\uFFFD"),
		RawCut:   len(shown) < len(raw),
		RawShown: len(shown),
	}
	if data.Title == "" {
		data.Title = "(no subject)"
	}
	v.renderPage(w, "message", data)
}

// htmlBody is GET /messages/{id}/html: the message's HTML body as a
// document for the page's sandboxed iframe, under mailCSP, or under
// remoteMailCSP with ?remote=1. Images the message carries as parts
// (cid: URLs, RFC 2392) are pointed at the parts.
func (v *webView) htmlBody(w http.ResponseWriter, r *http.Request) {
	remote, ok := boolParam(r, "remote")
	if !ok {
		writeError(w, http.StatusBadRequest, "remote must be 0 or 1")
		return
	}
	e, raw := v.readMessage(w, r)
	if e == nil {
		return
	}
	d := v.detail(e, raw)
	html := d.HTML
	if len(d.Parts) > 0 {
		var pairs []string
		for _, p := range d.Parts {
			if p.ContentID != "" {
				// The iframe's document is at /messages/{id}/html.
				pairs = append(pairs, "cid:"+p.ContentID, "../../"+strings.TrimPrefix(p.URL, "/"))
			}
		}
		html = strings.NewReplacer(pairs...).Replace(html)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if remote {
		h.Set("Content-Security-Policy", remoteMailCSP)
	} else {
		h.Set("Content-Security-Policy", mailCSP)
	}
	io.WriteString(w, html)
}

// livePage is GET /live: the session trace as it happens.
func (v *webView) livePage(w http.ResponseWriter, r *http.Request) {
	v.renderPage(w, "live", pageData{Title: "Live sessions", Page: "live", Script: "live.js"})
}

// staticFiles serves the embedded stylesheet and scripts.
func staticFiles() http.HandlerFunc {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return func(w http.ResponseWriter, r *http.Request) {
		// No directory listings, and the view's own JSON 404.
		if info, err := fs.Stat(sub, strings.TrimPrefix(r.URL.Path, "/")); err != nil || info.IsDir() {
			writeError(w, http.StatusNotFound, "no such file: "+r.URL.Path)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
}

// transcriptClass is the CSS class of a transcript line, as the live page
// colors the trace: by direction, and replies by class.
func transcriptClass(l TranscriptLine) string {
	switch {
	case l.Kind == 'C':
		return "c-client"
	case l.Kind == 'S' && l.Text != "" && '2' <= l.Text[0] && l.Text[0] <= '5':
		return "c-" + l.Text[:1]
	case l.Kind == 'S':
		return "c-2"
	}
	return "c-event"
}

// formatSize writes a byte count for people.
func formatSize(n any) string {
	var v float64
	switch n := n.(type) {
	case int:
		v = float64(n)
	case int64:
		v = float64(n)
	}
	switch {
	case v < 1024:
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	case v < 1<<20:
		return strconv.FormatFloat(v/1024, 'f', 1, 64) + " KiB"
	}
	return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB"
}
