// The list and message pages of smtpd's HTTP view: live updates of the list
// from the event stream, tabs, deleting, and loading a message's remote
// content on request. Plain JavaScript, no build step.
"use strict";

const root = document.querySelector("main").dataset.root;

function api(path, options) {
  return fetch(root + "api/v1/" + path, options).then(function (resp) {
    if (!resp.ok) {
      return resp.json().then(function (body) { throw new Error(body.error || resp.statusText); });
    }
    return resp.json();
  });
}

function sizeText(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function whenText(iso) {
  const d = new Date(iso);
  const pad = function (n) { return String(n).padStart(2, "0"); };
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

function cell(cls, text) {
  const td = document.createElement("td");
  td.className = cls;
  td.textContent = text;
  return td;
}

// A row of the list for a message of the event stream (textContent only:
// nothing from a message is ever parsed as HTML).
function messageRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  tr.className = "arrived";
  tr.append(cell("from", m.from), cell("to", (m.to || []).join(", ")));
  const subject = cell("subject", "");
  const a = document.createElement("a");
  a.href = root + "messages/" + m.id;
  a.textContent = m.subject || "(no subject)";
  subject.append(a);
  if (m.attachments) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.title = "attachments";
    badge.textContent = m.attachments + " att.";
    subject.append(" ", badge);
  }
  const date = cell("date", "");
  const time = document.createElement("time");
  time.dateTime = m.stored;
  time.textContent = whenText(m.stored);
  date.append(time);
  tr.append(subject, date, cell("num", sizeText(m.size)));
  return tr;
}

function setupList() {
  const table = document.getElementById("messages");
  if (!table) return;
  const count = document.getElementById("count");
  const deleteAll = document.getElementById("delete-all");
  const events = new EventSource(root + "api/v1/events");
  events.addEventListener("ready", function () { document.body.dataset.stream = "ready"; });
  events.addEventListener("message", function (ev) {
    const m = JSON.parse(ev.data);
    if (table.dataset.live) {
      table.tBodies[0].prepend(messageRow(m));
      count.textContent = String(Number(count.textContent) + 1);
      const empty = document.getElementById("empty");
      if (empty) empty.remove();
      deleteAll.hidden = false;
    } else {
      const note = document.getElementById("new-messages");
      note.hidden = false;
      note.dataset.n = String(Number(note.dataset.n || 0) + 1);
      note.textContent = note.dataset.n + " new: reload to see them";
    }
  });
  events.addEventListener("deleted", function (ev) {
    for (const id of JSON.parse(ev.data).ids) {
      const tr = table.querySelector('tr[data-id="' + CSS.escape(id) + '"]');
      if (tr) {
        tr.remove();
        count.textContent = String(Math.max(0, Number(count.textContent) - 1));
      }
    }
  });
  deleteAll.addEventListener("click", function () {
    if (!window.confirm("Delete every listed message from the Maildir?")) return;
    api("messages", { method: "DELETE" }).then(function () { location.reload(); }, function (err) { alert(err.message); });
  });
}

function setupTabs() {
  const tabs = document.querySelectorAll(".tabs a");
  if (tabs.length === 0) return;
  function show(id) {
    for (const t of tabs) {
      const on = t.getAttribute("href") === "#" + id;
      t.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById(t.getAttribute("href").slice(1)).hidden = !on;
    }
  }
  for (const t of tabs) {
    t.addEventListener("click", function (ev) {
      ev.preventDefault();
      show(t.getAttribute("href").slice(1));
      history.replaceState(null, "", t.getAttribute("href"));
    });
  }
  const wanted = location.hash.slice(1);
  const first = tabs[0].getAttribute("href").slice(1);
  show(document.getElementById(wanted) && wanted !== "" ? wanted : first);
}

function setupMessage() {
  const article = document.querySelector("article.message");
  if (!article) return;
  const id = article.dataset.id;
  document.getElementById("delete").addEventListener("click", function () {
    api("messages/" + id, { method: "DELETE" }).then(function () { location.href = root; }, function (err) { alert(err.message); });
  });
  const load = document.getElementById("load-remote");
  if (load) {
    const frame = document.getElementById("html-body");
    load.addEventListener("click", function () {
      frame.addEventListener("load", function () { frame.dataset.loaded = "remote"; }, { once: true });
      frame.src = id + "/html?remote=1";
      document.getElementById("remote-note").textContent = "Remote content loaded.";
    });
  }
}

setupList();
setupTabs();
setupMessage();
