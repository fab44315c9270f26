// The live sessions page of smtpd's HTTP view: the session trace, line by
// line, from the event stream (?trace=1), in the trace's colors.
"use strict";

const root = document.querySelector("main").dataset.root;
const trace = document.getElementById("trace");
const statusText = document.getElementById("status");
const maxLines = 5000; // older lines leave the page

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

function append(line) {
  const atBottom = trace.scrollTop + trace.clientHeight >= trace.scrollHeight - 4;
  trace.append(line);
  while (trace.childElementCount > maxLines) trace.firstElementChild.remove();
  if (atBottom) trace.scrollTop = trace.scrollHeight;
}

function traceLine(t) {
  const div = document.createElement("div");
  div.className = "line " + (t.kind === "server" ? "c-" + t.class : "c-" + t.kind);
  div.append(span("time", t.time), span("session", " [" + t.session + "] "), span("text", t.text));
  return div;
}

function note(cls, text) {
  const div = document.createElement("div");
  div.className = "line " + cls;
  div.append(span("text", text));
  return div;
}

const events = new EventSource(root + "api/v1/events?trace=1");
events.addEventListener("ready", function () {
  statusText.textContent = "live";
  statusText.className = "status live";
  document.body.dataset.stream = "ready";
});
events.addEventListener("error", function () {
  statusText.textContent = "reconnecting…";
  statusText.className = "status";
});
events.addEventListener("trace", function (ev) { append(traceLine(JSON.parse(ev.data))); });
events.addEventListener("message", function (ev) {
  const m = JSON.parse(ev.data);
  const div = note("c-stored", "stored for " + m.mailbox + ": ");
  const a = document.createElement("a");
  a.href = root + "messages/" + m.id;
  a.textContent = m.subject || "(no subject)";
  div.lastElementChild.append(a);
  append(div);
});
events.addEventListener("dropped", function (ev) {
  append(note("c-dropped", "… " + JSON.parse(ev.data).events + " events dropped: this page could not keep up"));
});
