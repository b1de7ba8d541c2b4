// The hub's admin page: renders each `snapshot` event of /admin/events.
//
// Peers, topics, labels and user agents come from clients: they are inserted with
// `textContent` (or as a `title` property) only, never as HTML.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  let lastUpdate = 0;

  function setBadge(element, state, text) {
    element.dataset.state = state;
    element.textContent = text;
  }

  function cell(row, text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    row.append(td);
    return td;
  }

  const number = new Intl.NumberFormat("en");
  const count = (n) => (typeof n === "number" ? number.format(n) : "–");

  function bytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit++;
    }
    return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function age(seconds) {
    if (typeof seconds !== "number") return "–";
    if (seconds < 60) return `${seconds}s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m}m ${String(seconds % 60).padStart(2, "0")}s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
    return `${Math.floor(h / 24)}d ${h % 24}h`;
  }

  const rate = (r) => (typeof r === "number" ? (r === 0 ? "0" : r.toFixed(1)) : "–");

  function renderCounters(snapshot) {
    const values = {
      ...snapshot.disconnects,
      topics_total: snapshot.topics_total,
      published: snapshot.published,
    };
    for (const element of document.querySelectorAll("[data-counter]")) {
      const value = values[element.dataset.counter];
      element.textContent = count(value);
      element.closest(".counter").classList.toggle("nonzero", typeof value === "number" && value > 0);
    }
  }

  function renderTopics(snapshot) {
    const rows = snapshot.topics.map((topic) => {
      const row = document.createElement("tr");
      cell(row, topic.name, "mono");
      cell(row, count(topic.subscribers), "num");
      cell(row, count(topic.retained_events), "num");
      cell(row, bytes(topic.retained_bytes), "num");
      cell(row, rate(topic.rate), "num");
      cell(row, count(topic.published), "num");
      let state = "open";
      if (topic.error) state = "error";
      else if (topic.closed) state = "closed";
      else if (!topic.exists) state = "dropped";
      const td = cell(row, state, "state", topic.error || "");
      td.dataset.state = state;
      return row;
    });
    $("#topics tbody").replaceChildren(...rows);
    if (rows.length === 0) $("#topics tbody").append(emptyRow(7, "no topics yet"));
    $("#topics-count").textContent = shown(snapshot.topics.length, snapshot.topics_total);
  }

  function renderConnections(snapshot) {
    const rows = snapshot.connections.map((c) => {
      const row = document.createElement("tr");
      cell(row, String(c.id), "num");
      cell(row, c.peer ?? "–", "mono", c.user_agent ?? "");
      cell(row, c.topic ?? c.path, c.topic ? "mono" : "mono muted");
      cell(row, c.label ?? "", "");
      cell(row, age(c.age), "num");
      cell(row, count(c.events_sent), "num");
      cell(row, bytes(c.bytes_sent), "num");
      cell(row, c.last_event_id ?? "", "mono small");
      return row;
    });
    $("#connections tbody").replaceChildren(...rows);
    if (rows.length === 0) $("#connections tbody").append(emptyRow(8, "no open streams"));
    $("#connections-count").textContent = shown(snapshot.connections.length, snapshot.connections_total);
  }

  function emptyRow(columns, text) {
    const row = document.createElement("tr");
    const td = cell(row, text, "empty");
    td.colSpan = columns;
    return row;
  }

  const shown = (listed, total) =>
    listed < total ? `(${count(listed)} of ${count(total)})` : `(${count(total)})`;

  function renderBackend(backend) {
    if (backend?.status === "ok") setBadge($("#backend"), "ok", "backend: ok");
    else setBadge($("#backend"), "bad", `backend: unavailable${backend?.reason ? ` (${backend.reason})` : ""}`);
  }

  function render(snapshot) {
    renderCounters(snapshot);
    renderTopics(snapshot);
    renderConnections(snapshot);
    renderBackend(snapshot.backend);
    lastUpdate = Date.now();
    const time = $("#updated");
    time.textContent = new Date(snapshot.time).toLocaleTimeString();
    time.dateTime = new Date(snapshot.time).toISOString();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  }

  function notice(text) {
    const p = $("#notice");
    p.textContent = text;
    p.hidden = !text;
  }

  const source = new EventSource("/admin/events");
  source.onopen = () => {
    setBadge($("#state"), "open", "connected");
    notice("");
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setBadge($("#state"), "bad", "disconnected");
      notice("The server refused the stream: the admin token may have expired. Open the admin URL the server printed again.");
    } else {
      setBadge($("#state"), "reconnecting", "reconnecting");
    }
  };
  source.addEventListener("snapshot", (event) => {
    let snapshot;
    try {
      snapshot = JSON.parse(event.data);
    } catch {
      return;
    }
    render(snapshot);
  });

  // A stream that goes quiet (a proxy holding it, a stalled server) shows as stale.
  setInterval(() => {
    if (source.readyState === EventSource.OPEN && lastUpdate && Date.now() - lastUpdate > 5000) {
      setBadge($("#state"), "reconnecting", "stale");
    } else if (source.readyState === EventSource.OPEN && lastUpdate) {
      setBadge($("#state"), "open", "connected");
    }
  }, 1000);
})();
