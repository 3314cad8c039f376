/**
 * The dashboard: one self-contained page (inline CSS and JS, no network but the admin API
 * and /events), embedded in the program so it works from the compiled binary.
 *
 * It draws with inline SVG: a chart of requests per second per backend over the last five
 * minutes, and a latency sparkline per server. It is live through /events (EventSource) and
 * changes things through the JSON API. With an admin token set, it asks for the token once
 * and keeps it in sessionStorage (gone when the tab closes).
 *
 * The script and style are allowed by their SHA-256 hashes in a Content-Security-Policy,
 * so nothing else can run on the page even if a server name tried to inject markup (names
 * are inserted with textContent, never as HTML).
 */
import { createHash } from "node:crypto";

const STYLE = String.raw`
:root {
  --bg: #f5f6f8; --card: #ffffff; --text: #1d2330; --muted: #697386; --border: #e3e6eb;
  --soft: #eef1f5; --accent: #3864c8; --accent-text: #ffffff; --grid: #e9ecf1;
  --healthy: #1e9e6a; --unhealthy: #d14343; --ejected: #dd7a1a; --draining: #b98a0c;
  --disabled: #8a93a3; --danger: #c73c3c; --shadow: 0 1px 2px rgba(16, 24, 40, .05);
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1318; --card: #161b22; --text: #e4e7ec; --muted: #98a2b3; --border: #262d38;
    --soft: #1d232c; --accent: #6b93f0; --accent-text: #0f1318; --grid: #222a35;
    --healthy: #3fbf8a; --unhealthy: #f06464; --ejected: #f0954a; --draining: #dcb33a;
    --disabled: #7d8696; --danger: #f06464; --shadow: none;
  }
}
* { box-sizing: border-box; }
html, body { margin: 0; }
body {
  background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  -webkit-font-smoothing: antialiased;
}
.num { font-variant-numeric: tabular-nums; }
header.top {
  display: flex; align-items: center; justify-content: space-between; gap: 12px;
  padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--border);
  position: sticky; top: 0; z-index: 5;
}
.brand { display: flex; align-items: baseline; gap: 10px; }
.logo { font-weight: 700; font-size: 18px; letter-spacing: -.02em; }
.logo b { color: var(--accent); }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.conn { display: flex; align-items: center; gap: 8px; font-size: 13px; color: var(--muted); }
.conn .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--disabled); }
.conn.live .dot { background: var(--healthy); box-shadow: 0 0 0 3px color-mix(in srgb, var(--healthy) 20%, transparent); }
.conn.down .dot { background: var(--unhealthy); }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 48px; display: grid; gap: 18px; }
.stats { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 14px; }
.stat, .card {
  background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  box-shadow: var(--shadow);
}
.stat { padding: 14px 16px; }
.stat .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.stat .value { font-size: 24px; font-weight: 600; margin-top: 2px; }
.card { padding: 16px 18px; min-width: 0; }
.card-head { display: flex; align-items: center; justify-content: space-between; gap: 12px; flex-wrap: wrap; margin-bottom: 10px; }
h2 { font-size: 15px; font-weight: 600; margin: 0; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 12px; color: var(--muted); }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.legend i { width: 10px; height: 3px; border-radius: 2px; display: inline-block; }
#chart { width: 100%; height: 220px; display: block; }
#chart text { fill: var(--muted); font-size: 11px; }
#chart .grid { stroke: var(--grid); stroke-width: 1; }
.strategy { display: flex; align-items: center; gap: 8px; }
.strategy label { color: var(--muted); font-size: 13px; }
select, input, button {
  font: inherit; color: inherit; border-radius: 7px; border: 1px solid var(--border);
  background: var(--card); padding: 6px 10px;
}
input:focus, select:focus, button:focus-visible { outline: 2px solid color-mix(in srgb, var(--accent) 45%, transparent); outline-offset: 1px; }
button { cursor: pointer; background: var(--soft); border-color: transparent; font-size: 13px; }
button:hover { filter: brightness(.96); }
button.primary { background: var(--accent); color: var(--accent-text); font-weight: 600; }
button.danger { color: var(--danger); }
button.confirm { background: var(--danger); color: #fff; }
button:disabled { opacity: .5; cursor: default; }
.table-wrap { overflow-x: auto; margin: 0 -18px; padding: 0 18px; }
table { width: 100%; border-collapse: collapse; }
th {
  text-align: left; font-weight: 500; font-size: 12px; color: var(--muted);
  padding: 8px 10px; border-bottom: 1px solid var(--border); white-space: nowrap;
}
td { padding: 10px; border-bottom: 1px solid var(--border); vertical-align: middle; }
tbody tr:last-child td { border-bottom: 0; }
th.r, td.r { text-align: right; }
.server { display: flex; align-items: center; gap: 10px; min-width: 0; }
.swatch { width: 4px; height: 30px; border-radius: 2px; flex: none; }
.server .id { font-weight: 600; }
.server .url { font-size: 12px; color: var(--muted); overflow: hidden; text-overflow: ellipsis; }
.pill {
  display: inline-flex; align-items: center; gap: 6px; padding: 2px 9px; border-radius: 999px;
  font-size: 12px; font-weight: 500; white-space: nowrap;
  background: color-mix(in srgb, var(--c) 13%, transparent); color: var(--c);
}
.pill::before { content: ""; width: 7px; height: 7px; border-radius: 50%; background: var(--c); }
.s-healthy { --c: var(--healthy); } .s-unhealthy { --c: var(--unhealthy); }
.s-ejected { --c: var(--ejected); } .s-draining { --c: var(--draining); }
.s-disabled { --c: var(--disabled); }
.health { font-size: 11px; color: var(--muted); margin-top: 3px; white-space: nowrap; }
.weight { display: flex; gap: 4px; align-items: center; }
.weight input { width: 64px; padding: 4px 6px; text-align: right; }
.weight button { padding: 4px 8px; }
.actions { display: flex; gap: 6px; justify-content: flex-end; flex-wrap: wrap; }
.actions button { padding: 4px 10px; }
svg.spark { width: 110px; height: 28px; display: block; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 18px; }
form.add { margin-top: 12px; display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr) 80px auto; gap: 8px; align-items: end; }
form.add label { display: grid; gap: 4px; font-size: 12px; color: var(--muted); }
form.add input { width: 100%; }
.hint { font-size: 12px; color: var(--muted); margin: 8px 0 0; }
ol.events { list-style: none; margin: 0; padding: 0; max-height: 220px; overflow: auto; font-size: 13px; }
ol.events li { display: flex; gap: 10px; padding: 6px 0; border-bottom: 1px solid var(--border); }
ol.events li:last-child { border-bottom: 0; }
ol.events time { color: var(--muted); flex: none; }
.empty { color: var(--muted); font-size: 13px; padding: 10px 0; }
#toast {
  position: fixed; left: 50%; bottom: 24px; transform: translateX(-50%); max-width: min(92vw, 560px);
  background: var(--text); color: var(--bg); padding: 10px 16px; border-radius: 8px; font-size: 13px;
  opacity: 0; pointer-events: none; transition: opacity .2s;
}
#toast.show { opacity: 1; }
#toast.error { background: var(--danger); color: #fff; }
.overlay { position: fixed; inset: 0; background: rgba(15, 19, 24, .45); display: grid; place-items: center; z-index: 10; }
.overlay[hidden] { display: none; }
.overlay form { background: var(--card); border-radius: 12px; padding: 22px; width: min(92vw, 380px); display: grid; gap: 12px; }
.overlay p { margin: 0; color: var(--muted); font-size: 13px; }
@media (max-width: 900px) {
  .stats { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .grid2 { grid-template-columns: minmax(0, 1fr); }
}
@media (max-width: 720px) {
  header.top, main { padding-left: 14px; padding-right: 14px; }
  .stat .value { font-size: 20px; }
  form.add { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
  form.add label:first-child { grid-column: 1 / -1; }
  .table-wrap { margin: 0; padding: 0; overflow: visible; }
  table thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tbody tr { border: 1px solid var(--border); border-radius: 9px; padding: 6px 12px; margin-bottom: 10px; }
  td { display: flex; justify-content: space-between; align-items: center; gap: 12px; border: 0; padding: 6px 0; text-align: right; }
  td.r { text-align: right; }
  td[data-label]::before { content: attr(data-label); color: var(--muted); font-size: 12px; text-align: left; }
  td.first { justify-content: flex-start; text-align: left; border-bottom: 1px solid var(--border); padding-bottom: 10px; margin-bottom: 4px; }
  .actions { justify-content: flex-end; }
}
`;

const SCRIPT = String.raw`
"use strict";
(function () {
  var TOKEN_KEY = "lb-admin-token";
  var WINDOW_MS = 5 * 60 * 1000;
  var PALETTE = ["#4a78c8", "#e0873a", "#3a9d6c", "#a06bbf", "#d35d6e", "#3aa3a8", "#c2a032", "#7d6a5a"];
  var SVGNS = "http://www.w3.org/2000/svg";
  var token = sessionStorage.getItem(TOKEN_KEY) || "";
  var series = new Map();
  var colours = new Map();
  var rows = new Map();
  var last = null;
  var latest = null;
  var es = null;
  var strategies = [];

  function $(sel) { return document.querySelector(sel); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function colourOf(id) {
    if (!colours.has(id)) colours.set(id, PALETTE[colours.size % PALETTE.length]);
    return colours.get(id);
  }
  function fmt(n, digits) {
    if (!isFinite(n)) return "–";
    if (n >= 1000) return Math.round(n).toLocaleString();
    return n.toFixed(digits);
  }
  function fmtMs(ms) { return ms <= 0 ? "–" : ms < 10 ? ms.toFixed(1) + " ms" : Math.round(ms) + " ms"; }
  function clock(t) { return new Date(t).toLocaleTimeString([], { hour12: false }); }

  var toastTimer = 0;
  function toast(msg, isError) {
    var t = $("#toast");
    t.textContent = msg;
    t.className = "show" + (isError ? " error" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.className = ""; }, isError ? 6000 : 3000);
  }

  function api(method, path, body) {
    var headers = {};
    if (token) headers.authorization = "Bearer " + token;
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, {
      method: method, headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (data) {
        if (res.status === 401) {
          askToken(token ? "That token was not accepted." : "");
          throw new Error("the admin API needs a token");
        }
        if (!res.ok) throw new Error((data && data.error && data.error.message) || (res.status + " " + res.statusText));
        return data;
      });
    });
  }

  // ---- token ----
  function askToken(why) {
    $("#auth-why").textContent = why || "This lb has an admin token. It is kept in this tab only.";
    $("#auth").hidden = false;
    $("#auth-token").focus();
  }
  $("#auth-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = $("#auth-token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#auth").hidden = true;
    start();
  });

  // ---- live data ----
  function setConn(state, text) {
    var c = $("#conn");
    c.className = "conn " + state;
    $("#conn-text").textContent = text;
  }

  function connect() {
    if (es) es.close();
    var url = "/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
    es = new EventSource(url);
    setConn("", "connecting…");
    es.addEventListener("open", function () { setConn("live", "live"); });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED) {
        setConn("down", "disconnected");
        // EventSource gives up on an error status; find out why, then try again.
        api("GET", "/api/strategy").then(function () { setTimeout(connect, 2000); }, function () {});
      } else setConn("down", "reconnecting…");
    });
    es.addEventListener("history", function (ev) { onHistory(JSON.parse(ev.data)); });
    es.addEventListener("snapshot", function (ev) { onSnapshot(JSON.parse(ev.data)); });
    es.addEventListener("state", function (ev) { onStateEvent(JSON.parse(ev.data)); });
  }

  function pointFrom(prev, cur, dt) {
    var dReq = Math.max(0, cur.requests - prev.requests);
    var dErr = Math.max(0, cur.errors - prev.errors);
    return { rps: dReq / dt, dReq: dReq, dErr: dErr, dt: dt, lat: cur.lat };
  }

  function addPoint(id, t, p) {
    var s = series.get(id);
    if (!s) { s = []; series.set(id, s); }
    p.t = t;
    s.push(p);
    while (s.length && s[0].t < t - WINDOW_MS) s.shift();
  }

  function onHistory(samples) {
    series.clear();
    last = null;
    for (var i = 0; i < samples.length; i++) {
      var smp = samples[i];
      var cur = { t: smp.t, servers: new Map() };
      for (var j = 0; j < smp.s.length; j++) {
        var r = smp.s[j];
        cur.servers.set(r[0], { requests: r[1], errors: r[2], lat: r[3] });
      }
      if (last) {
        var dt = (cur.t - last.t) / 1000;
        cur.servers.forEach(function (v, id) {
          var prev = last.servers.get(id);
          if (prev && dt > 0) addPoint(id, cur.t, pointFrom(prev, v, dt));
        });
      }
      last = cur;
    }
  }

  function onSnapshot(snap) {
    latest = snap;
    var cur = { t: snap.time, servers: new Map() };
    snap.servers.forEach(function (s) {
      cur.servers.set(s.id, { requests: s.requests, errors: s.errors + s.responses5xx, lat: s.latencyEwmaMs });
    });
    // Extra snapshots come after changes; rates are taken over at least half a second.
    if (!last || snap.time - last.t >= 500) {
      if (last) {
        var dt = (cur.t - last.t) / 1000;
        cur.servers.forEach(function (v, id) {
          var prev = last.servers.get(id);
          if (prev) addPoint(id, cur.t, pointFrom(prev, v, dt));
        });
      }
      last = cur;
    }
    var ids = new Set(snap.servers.map(function (s) { return s.id; }));
    series.forEach(function (_, id) { if (!ids.has(id)) series.delete(id); });
    $("#version").textContent = "v" + snap.version + " · up " + uptime(snap.uptimeSeconds);
    renderStrategy(snap.strategy);
    renderTable(snap);
    renderStats(snap);
    renderChart();
  }

  function uptime(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function recent(id, ms) {
    var s = series.get(id) || [];
    var from = (latest ? latest.time : Date.now()) - ms;
    var req = 0, err = 0;
    for (var i = s.length - 1; i >= 0 && s[i].t > from; i--) { req += s[i].dReq; err += s[i].dErr; }
    return { req: req, err: err };
  }

  /** Requests per second over the last three seconds (one-second rates are jumpy). */
  function rpsOf(id) {
    var s = series.get(id) || [];
    var req = 0, dt = 0;
    for (var i = s.length - 1; i >= 0 && i >= s.length - 3; i--) { req += s[i].dReq; dt += s[i].dt; }
    return dt ? req / dt : 0;
  }

  // ---- rendering ----
  function renderStats(snap) {
    var rps = 0, inflight = 0, req = 0, err = 0, avail = 0;
    snap.servers.forEach(function (s) {
      rps += rpsOf(s.id);
      inflight += s.inflight;
      var r = recent(s.id, 60000);
      req += r.req; err += r.err;
      if (s.state === "healthy" && !s.removing) avail++;
    });
    $("#stat-rps").textContent = fmt(rps, 1);
    $("#stat-err").textContent = req ? fmt((100 * err) / req, 1) + "%" : "–";
    $("#stat-inflight").textContent = String(inflight);
    $("#stat-avail").textContent = avail + " / " + snap.servers.length;
  }

  function renderStrategy(st) {
    var sel = $("#strategy");
    if (document.activeElement !== sel && sel.value !== st.name) sel.value = st.name;
    var o = st.options || {};
    var hashy = st.name === "consistent-hash" || st.name === "maglev";
    $("#strategy-note").textContent = hashy ? "key " + o.key + (o.balanceFactor ? " · bound " + o.balanceFactor : "") : "";
  }

  function button(label, action, cls) {
    var b = el("button", cls || "", label);
    b.type = "button";
    b.dataset.action = action;
    return b;
  }

  function makeRow(id) {
    var tr = el("tr");
    tr.dataset.id = id;
    var c = {};
    var first = el("td", "first");
    var server = el("div", "server");
    var sw = el("span", "swatch");
    sw.style.background = colourOf(id);
    var names = el("div");
    c.id = el("div", "id", id);
    c.url = el("div", "url");
    names.append(c.id, c.url);
    server.append(sw, names);
    first.append(server);
    var state = el("td");
    state.dataset.label = "State";
    c.pill = el("span", "pill");
    c.health = el("div", "health");
    state.append(c.pill, c.health);
    var weight = el("td");
    weight.dataset.label = "Weight";
    var wf = el("form", "weight");
    c.weight = el("input", "num");
    c.weight.type = "number"; c.weight.min = "1"; c.weight.max = "1000"; c.weight.step = "1";
    c.weight.setAttribute("aria-label", "weight of " + id);
    var wb = el("button", "", "Set");
    wb.type = "submit";
    wf.append(c.weight, wb);
    wf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var w = Number(c.weight.value);
      act(id, "PATCH", { weight: w }, "weight of " + id + " set to " + w).then(function () { c.weight.blur(); });
    });
    weight.append(wf);
    function numCell(label, col) {
      var td = el("td", "r num");
      td.dataset.label = label;
      td.dataset.col = col;
      return td;
    }
    c.inflight = numCell("In flight", "inflight");
    c.rps = numCell("Req/s", "rps");
    c.err = numCell("Errors", "errors");
    c.lat = numCell("Latency", "latency");
    var spark = el("td");
    spark.dataset.label = "Latency trend";
    c.spark = svg("svg", { class: "spark", viewBox: "0 0 110 28", preserveAspectRatio: "none" });
    c.line = svg("polyline", { fill: "none", stroke: colourOf(id), "stroke-width": "1.5", "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" });
    c.spark.append(c.line);
    spark.append(c.spark);
    var actions = el("td");
    c.actions = el("div", "actions");
    actions.append(c.actions);
    c.actions.addEventListener("click", function (ev) {
      var b = ev.target.closest("button");
      if (!b) return;
      var a = b.dataset.action;
      if (a === "drain") act(id, "PATCH", { state: "draining" }, id + " is draining");
      else if (a === "disable") act(id, "PATCH", { state: "disabled" }, id + " is disabled");
      else if (a === "enable") act(id, "PATCH", { state: "enabled" }, id + " is enabled");
      else if (a === "remove") {
        b.textContent = "Confirm remove";
        b.dataset.action = "remove-confirm";
        b.className = "confirm";
        setTimeout(function () { if (b.isConnected && b.dataset.action === "remove-confirm") { b.textContent = "Remove"; b.dataset.action = "remove"; b.className = "danger"; } }, 4000);
      } else if (a === "remove-confirm") act(id, "DELETE", undefined, id + " is being removed");
    });
    tr.append(first, state, weight, c.inflight, c.rps, c.err, c.lat, spark, actions);
    c.tr = tr;
    c.actionKey = "";
    return c;
  }

  function act(id, method, body, ok) {
    return api(method, "/api/servers/" + encodeURIComponent(id), body).then(
      function () { toast(ok); },
      function (e) { toast(e.message, true); },
    );
  }

  function renderTable(snap) {
    var tbody = $("#servers tbody");
    var seen = new Set();
    snap.servers.forEach(function (s, i) {
      seen.add(s.id);
      var c = rows.get(s.id);
      if (!c) { c = makeRow(s.id); rows.set(s.id, c); }
      if (tbody.children[i] !== c.tr) tbody.insertBefore(c.tr, tbody.children[i] || null);
      c.tr.dataset.state = s.state;
      c.url.textContent = s.url;
      var label = s.removing ? "removing" : s.state;
      if (c.pill.textContent !== label) {
        c.pill.textContent = label;
        c.pill.className = "pill s-" + s.state;
      }
      var h = s.lastHealth;
      c.health.textContent = h.at ? (h.ok ? "check ok" : "check failed") + (h.detail ? " · " + h.detail : "") : "";
      if (document.activeElement !== c.weight) c.weight.value = String(s.weight);
      c.inflight.textContent = String(s.inflight);
      c.rps.textContent = fmt(rpsOf(s.id), 1);
      var r = recent(s.id, 10000);
      c.err.textContent = r.req ? fmt((100 * r.err) / r.req, 1) + "%" : "–";
      c.lat.textContent = fmtMs(s.latencyEwmaMs);
      drawSpark(c, series.get(s.id) || []);
      var key = s.state + (s.removing ? "/removing" : "");
      if (key !== c.actionKey) {
        c.actionKey = key;
        c.actions.replaceChildren();
        if (s.removing) c.actions.append(el("span", "muted small", "draining, then removed"));
        else {
          if (s.state !== "draining" && s.state !== "disabled") c.actions.append(button("Drain", "drain"));
          if (s.state !== "disabled") c.actions.append(button("Disable", "disable"));
          if (s.state === "draining" || s.state === "disabled") c.actions.append(button("Enable", "enable"));
          c.actions.append(button("Remove", "remove", "danger"));
        }
      }
    });
    rows.forEach(function (c, id) {
      if (!seen.has(id)) { c.tr.remove(); rows.delete(id); }
    });
    $("#servers-empty").hidden = snap.servers.length > 0;
  }

  function drawSpark(c, pts) {
    var tail = pts.slice(-60);
    if (tail.length < 2) { c.line.setAttribute("points", ""); return; }
    var max = 0;
    tail.forEach(function (p) { if (p.lat > max) max = p.lat; });
    max = max || 1;
    // Fills the width once a minute of samples is in; until then it stretches what there is.
    var step = 110 / Math.max(tail.length - 1, 20);
    var off = 110 - (tail.length - 1) * step;
    c.line.setAttribute("points", tail.map(function (p, i) {
      return (off + i * step).toFixed(1) + "," + (26 - (p.lat / max) * 24).toFixed(1);
    }).join(" "));
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }

  function renderChart() {
    var chart = $("#chart");
    var W = Math.max(280, Math.round(chart.getBoundingClientRect().width));
    var H = 220, L = 44, R = 10, T = 10, B = 24;
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    var now = latest ? latest.time : Date.now();
    // The window grows with the data, from one minute up to five.
    var earliest = now;
    series.forEach(function (pts) { if (pts.length && pts[0].t < earliest) earliest = pts[0].t; });
    var minutes = Math.min(5, Math.max(1, Math.ceil((now - earliest) / 60000)));
    var span = minutes * 60000;
    var from = now - span;
    $("#chart-window").textContent = "last " + (minutes === 1 ? "minute" : minutes + " minutes");
    var max = 0;
    series.forEach(function (pts) { pts.forEach(function (p) { if (p.rps > max) max = p.rps; }); });
    max = niceMax(max * 1.1);
    var x = function (t) { return L + ((t - from) / span) * (W - L - R); };
    var y = function (v) { return T + (1 - v / max) * (H - T - B); };
    var kids = [];
    for (var i = 0; i <= 4; i++) {
      var v = (max * i) / 4, yy = y(v).toFixed(1);
      kids.push(svg("line", { class: "grid", x1: L, x2: W - R, y1: yy, y2: yy }));
      var lab = svg("text", { x: L - 8, y: (Number(yy) + 4).toFixed(1), "text-anchor": "end" });
      lab.textContent = v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
      kids.push(lab);
    }
    var ticks = minutes === 1 ? [60, 45, 30, 15, 0] : [];
    if (!ticks.length) for (var k = minutes; k >= 0; k--) ticks.push(k * 60);
    ticks.forEach(function (sec, i) {
      var tx = svg("text", { x: x(now - sec * 1000).toFixed(1), y: H - 6, "text-anchor": i === 0 ? "start" : sec === 0 ? "end" : "middle" });
      tx.textContent = sec === 0 ? "now" : sec % 60 ? "−" + sec + "s" : "−" + sec / 60 + "m";
      kids.push(tx);
    });
    var legend = $("#legend");
    legend.replaceChildren();
    series.forEach(function (pts, id) {
      var colour = colourOf(id);
      var vis = pts.filter(function (p) { return p.t >= from; });
      if (vis.length > 1) {
        kids.push(svg("polyline", {
          fill: "none", stroke: colour, "stroke-width": "2", "stroke-linejoin": "round", "stroke-linecap": "round",
          points: vis.map(function (p) { return x(p.t).toFixed(1) + "," + y(p.rps).toFixed(1); }).join(" "),
        }));
      }
      var item = el("span");
      var sw = el("i");
      sw.style.background = colour;
      item.append(sw, document.createTextNode(id));
      legend.append(item);
    });
    chart.replaceChildren.apply(chart, kids);
  }

  function onStateEvent(e) {
    var list = $("#events");
    var li = el("li");
    var t = el("time", "", clock(e.time));
    var msg = el("span");
    var who = el("strong", "", e.server);
    msg.append(who, document.createTextNode(" " + e.from + " → " + e.to + " · " + e.reason));
    li.append(t, msg);
    list.prepend(li);
    while (list.children.length > 40) list.lastChild.remove();
    $("#events-empty").hidden = true;
  }

  // ---- controls ----
  $("#strategy").addEventListener("change", function (ev) {
    var name = ev.target.value;
    api("PUT", "/api/strategy", { name: name }).then(function (st) {
      toast("strategy switched to " + st.name);
      renderStrategy({ name: st.name, options: st.options });
    }, function (e) {
      toast(e.message, true);
      if (latest) ev.target.value = latest.strategy.name;
    });
  });

  $("#add-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { url: $("#add-url").value.trim() };
    var name = $("#add-name").value.trim();
    var w = $("#add-weight").value.trim();
    if (name) body.name = name;
    if (w) body.weight = Number(w);
    api("POST", "/api/servers", body).then(function (s) {
      toast("added " + s.id);
      ev.target.reset();
    }, function (e) { toast(e.message, true); });
  });

  window.addEventListener("resize", function () { renderChart(); });

  function start() {
    api("GET", "/api/strategy").then(function (st) {
      strategies = st.available;
      var sel = $("#strategy");
      sel.replaceChildren();
      strategies.forEach(function (n) { var o = el("option", "", n); o.value = n; sel.append(o); });
      sel.value = st.name;
      renderStrategy(st);
      connect();
    }, function (e) {
      setConn("down", "no connection");
      if (!$("#auth").hidden) return;
      toast(e.message, true);
      setTimeout(start, 3000);
    });
  }
  renderChart();
  start();
})();
`;

const BODY = `
<header class="top">
  <div class="brand"><span class="logo"><b>▍</b>lb</span><span class="muted small" id="version"></span></div>
  <div class="conn" id="conn"><span class="dot"></span><span id="conn-text">connecting…</span></div>
</header>
<main>
  <section class="stats" aria-label="totals">
    <div class="stat"><div class="label">Requests / s</div><div class="value num" id="stat-rps">–</div></div>
    <div class="stat"><div class="label">Errors (1 min)</div><div class="value num" id="stat-err">–</div></div>
    <div class="stat"><div class="label">In flight</div><div class="value num" id="stat-inflight">–</div></div>
    <div class="stat"><div class="label">Available</div><div class="value num" id="stat-avail">–</div></div>
  </section>
  <section class="card">
    <div class="card-head"><h2>Requests per second <span class="muted small" id="chart-window"></span></h2><div class="legend" id="legend"></div></div>
    <svg id="chart" role="img" aria-label="requests per second per backend"></svg>
  </section>
  <section class="card">
    <div class="card-head">
      <h2>Servers</h2>
      <div class="strategy">
        <label for="strategy">Strategy</label><select id="strategy"></select>
        <span class="muted small" id="strategy-note"></span>
      </div>
    </div>
    <div class="table-wrap">
      <table id="servers">
        <thead><tr>
          <th>Server</th><th>State</th><th>Weight</th><th class="r">In flight</th><th class="r">Req/s</th>
          <th class="r">Errors</th><th class="r">Latency</th><th>Latency trend</th><th></th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
    <div class="empty" id="servers-empty" hidden>No servers. Add one below.</div>
  </section>
  <div class="grid2">
    <section class="card">
      <h2>Add a server</h2>
      <form class="add" id="add-form" autocomplete="off">
        <label>URL<input id="add-url" required placeholder="http://127.0.0.1:9004"></label>
        <label>Name<input id="add-name" placeholder="optional"></label>
        <label>Weight<input id="add-weight" type="number" min="1" max="1000" step="1" placeholder="1"></label>
        <button class="primary" type="submit">Add</button>
      </form>
      <p class="hint">It starts taking traffic on the next request and is health-checked like the others. Changes are saved to the state file.</p>
    </section>
    <section class="card">
      <h2>Recent events</h2>
      <ol class="events" id="events"></ol>
      <div class="empty" id="events-empty">State changes (health, ejections, drains) appear here as they happen.</div>
    </section>
  </div>
</main>
<div id="toast" role="status" aria-live="polite"></div>
<div class="overlay" id="auth" hidden>
  <form id="auth-form">
    <h2>Admin token</h2>
    <p id="auth-why"></p>
    <input type="text" autocomplete="username" value="lb-admin" hidden aria-hidden="true">
    <input id="auth-token" type="password" autocomplete="current-password" placeholder="token" aria-label="admin token">
    <button class="primary" type="submit">Connect</button>
  </form>
</div>
`;

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("base64");
}

/** The page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>lb dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

/** Allows exactly the page's own script and style, and connections back to this listener. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src 'sha256-${sha256(SCRIPT)}'`,
  `style-src 'sha256-${sha256(STYLE)}'`,
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
