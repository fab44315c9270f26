package smtpd

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statsCollector exports a server's counters for Prometheus, read at each
// scrape from Server.Stats (and its settings from RuntimeSettings): the
// counters the management protocol serves, under the usual names and units,
// plus commands by verb and replies by code as chasquid exports them.
type statsCollector struct {
	srv *Server

	connections, sessions, bytes, messages *prometheus.Desc
	bareLF, commitBatches                  *prometheus.Desc
	commands, replies                      *prometheus.Desc
	uptime, maxSize, verbose               *prometheus.Desc
}

func newStatsCollector(srv *Server) *statsCollector {
	return &statsCollector{
		srv:           srv,
		connections:   prometheus.NewDesc("smtpd_connections_total", "SMTP connections accepted, refused ones included.", nil, nil),
		sessions:      prometheus.NewDesc("smtpd_sessions_active", "SMTP sessions open now.", nil, nil),
		bytes:         prometheus.NewDesc("smtpd_bytes_total", "Bytes received (in) and sent (out) by SMTP sessions.", []string{"direction"}, nil),
		messages:      prometheus.NewDesc("smtpd_messages_total", "Messages by result: accepted (250), rejected (552 after the data), failed (451, not stored).", []string{"result"}, nil),
		bareLF:        prometheus.NewDesc("smtpd_bare_lf_lines_total", "Command lines that ended in a bare LF instead of CRLF.", nil, nil),
		commitBatches: prometheus.NewDesc("smtpd_commit_batches_total", "Flushes to disk that made accepted messages durable; concurrent sessions share them.", nil, nil),
		commands:      prometheus.NewDesc("smtpd_commands_total", "SMTP commands received, by verb.", []string{"verb"}, nil),
		replies:       prometheus.NewDesc("smtpd_replies_total", "SMTP replies sent, by code.", []string{"code"}, nil),
		uptime:        prometheus.NewDesc("smtpd_uptime_seconds", "Time since the server started.", nil, nil),
		maxSize:       prometheus.NewDesc("smtpd_max_message_bytes", "The message size limit in force.", nil, nil),
		verbose:       prometheus.NewDesc("smtpd_trace_enabled", "1 when the session trace is on.", nil, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connections, c.sessions, c.bytes, c.messages, c.bareLF, c.commitBatches, c.commands, c.replies, c.uptime, c.maxSize, c.verbose} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(c.connections, st.Connections)
	gauge(c.sessions, float64(st.Sessions))
	counter(c.bytes, st.BytesIn, "in")
	counter(c.bytes, st.BytesOut, "out")
	counter(c.messages, st.Messages, "accepted")
	counter(c.messages, st.Rejected, "rejected")
	counter(c.messages, st.Failed, "failed")
	counter(c.bareLF, st.BareLF)
	counter(c.commitBatches, st.CommitBatches)
	for verb, n := range st.Commands {
		counter(c.commands, n, verb)
	}
	for code, n := range st.Replies {
		counter(c.replies, n, strconv.Itoa(code))
	}
	gauge(c.uptime, st.Uptime.Seconds())
	now := c.srv.RuntimeSettings()
	gauge(c.maxSize, float64(now.MaxMessageBytes))
	verbose := 0.0
	if now.Verbose {
		verbose = 1
	}
	gauge(c.verbose, verbose)
}

// prometheusHandler serves the metrics of srv in the Prometheus text
// format, with the Go runtime and process collectors, from a registry of
// its own (no global state: two servers in one process do not mix).
func prometheusHandler(srv *Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatsCollector(srv), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
