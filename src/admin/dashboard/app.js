// The dashboard's script, loaded as a module (module scope keeps its names private).
const TOKEN_KEY = "lb-admin-token";
const WINDOW_MS = 5 * 60 * 1000;
const PALETTE = [
  "#4a78c8",
  "#e0873a",
  "#3a9d6c",
  "#a06bbf",
  "#d35d6e",
  "#3aa3a8",
  "#c2a032",
  "#7d6a5a",
];
const SVGNS = "http://www.w3.org/2000/svg";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
const series = new Map();
const colours = new Map();
const rows = new Map();
let last = null;
let latest = null;
let es = null;
let strategies = [];

function $(sel) {
  return document.querySelector(sel);
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
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
function fmtMs(ms) {
  return ms <= 0 ? "–" : ms < 10 ? ms.toFixed(1) + " ms" : Math.round(ms) + " ms";
}
function clock(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

let toastTimer = 0;
function toast(msg, isError) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "show" + (isError ? " error" : "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(function () {
    t.className = "";
  }, isError ? 6000 : 3000);
}

function api(method, path, body) {
  const headers = {};
  if (token) headers.authorization = "Bearer " + token;
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(path, {
    method: method,
    headers: headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(function (res) {
    return res.json().catch(function () {
      return null;
    }).then(function (data) {
      if (res.status === 401) {
        askToken(token ? "That token was not accepted." : "");
        throw new Error("the admin API needs a token");
      }
      if (!res.ok) {
        throw new Error(
          (data && data.error && data.error.message) || (res.status + " " + res.statusText),
        );
      }
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
  const c = $("#conn");
  c.className = "conn " + state;
  $("#conn-text").textContent = text;
}

function connect() {
  if (es) es.close();
  const url = "/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
  es = new EventSource(url);
  setConn("", "connecting…");
  es.addEventListener("open", function () {
    setConn("live", "live");
  });
  es.addEventListener("error", function () {
    if (es.readyState === EventSource.CLOSED) {
      setConn("down", "disconnected");
      // EventSource gives up on an error status; find out why, then try again.
      api("GET", "/api/strategy").then(function () {
        setTimeout(connect, 2000);
      }, function () {});
    } else setConn("down", "reconnecting…");
  });
  es.addEventListener("history", function (ev) {
    onHistory(JSON.parse(ev.data));
  });
  es.addEventListener("snapshot", function (ev) {
    onSnapshot(JSON.parse(ev.data));
  });
  es.addEventListener("state", function (ev) {
    onStateEvent(JSON.parse(ev.data));
  });
}

function pointFrom(prev, cur, dt) {
  const dReq = Math.max(0, cur.requests - prev.requests);
  const dErr = Math.max(0, cur.errors - prev.errors);
  return { rps: dReq / dt, dReq: dReq, dErr: dErr, dt: dt, lat: cur.lat };
}

function addPoint(id, t, p) {
  let s = series.get(id);
  if (!s) {
    s = [];
    series.set(id, s);
  }
  p.t = t;
  s.push(p);
  while (s.length && s[0].t < t - WINDOW_MS) s.shift();
}

function onHistory(samples) {
  series.clear();
  last = null;
  for (let i = 0; i < samples.length; i++) {
    const smp = samples[i];
    const cur = { t: smp.t, servers: new Map() };
    for (let j = 0; j < smp.s.length; j++) {
      const r = smp.s[j];
      cur.servers.set(r[0], { requests: r[1], errors: r[2], lat: r[3] });
    }
    if (last) {
      const dt = (cur.t - last.t) / 1000;
      cur.servers.forEach(function (v, id) {
        const prev = last.servers.get(id);
        if (prev && dt > 0) addPoint(id, cur.t, pointFrom(prev, v, dt));
      });
    }
    last = cur;
  }
}

function onSnapshot(snap) {
  latest = snap;
  const cur = { t: snap.time, servers: new Map() };
  snap.servers.forEach(function (s) {
    cur.servers.set(s.id, {
      requests: s.requests,
      errors: s.errors + s.responses5xx,
      lat: s.latencyEwmaMs,
    });
  });
  // Extra snapshots come after changes; rates are taken over at least half a second.
  if (!last || snap.time - last.t >= 500) {
    if (last) {
      const dt = (cur.t - last.t) / 1000;
      cur.servers.forEach(function (v, id) {
        const prev = last.servers.get(id);
        if (prev) addPoint(id, cur.t, pointFrom(prev, v, dt));
      });
    }
    last = cur;
  }
  const ids = new Set(snap.servers.map(function (s) {
    return s.id;
  }));
  series.forEach(function (_, id) {
    if (!ids.has(id)) series.delete(id);
  });
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
  const s = series.get(id) || [];
  const from = (latest ? latest.time : Date.now()) - ms;
  let req = 0, err = 0;
  for (let i = s.length - 1; i >= 0 && s[i].t > from; i--) {
    req += s[i].dReq;
    err += s[i].dErr;
  }
  return { req: req, err: err };
}

/** Requests per second over the last three seconds (one-second rates are jumpy). */
function rpsOf(id) {
  const s = series.get(id) || [];
  let req = 0, dt = 0;
  for (let i = s.length - 1; i >= 0 && i >= s.length - 3; i--) {
    req += s[i].dReq;
    dt += s[i].dt;
  }
  return dt ? req / dt : 0;
}

// ---- rendering ----
function renderStats(snap) {
  let rps = 0, inflight = 0, req = 0, err = 0, avail = 0;
  snap.servers.forEach(function (s) {
    rps += rpsOf(s.id);
    inflight += s.inflight;
    const r = recent(s.id, 60000);
    req += r.req;
    err += r.err;
    if (s.state === "healthy" && !s.removing) avail++;
  });
  $("#stat-rps").textContent = fmt(rps, 1);
  $("#stat-err").textContent = req ? fmt((100 * err) / req, 1) + "%" : "–";
  $("#stat-inflight").textContent = String(inflight);
  $("#stat-avail").textContent = avail + " / " + snap.servers.length;
}

function renderStrategy(st) {
  const sel = $("#strategy");
  if (document.activeElement !== sel && sel.value !== st.name) sel.value = st.name;
  const o = st.options || {};
  const hashy = st.name === "consistent-hash" || st.name === "maglev";
  $("#strategy-note").textContent = hashy
    ? "key " + o.key + (o.balanceFactor ? " · bound " + o.balanceFactor : "")
    : "";
}

function button(label, action, cls) {
  const b = el("button", cls || "", label);
  b.type = "button";
  b.dataset.action = action;
  return b;
}

function makeRow(id) {
  const tr = el("tr");
  tr.dataset.id = id;
  const c = {};
  const first = el("td", "first");
  const server = el("div", "server");
  const sw = el("span", "swatch");
  sw.style.background = colourOf(id);
  const names = el("div");
  c.id = el("div", "id", id);
  c.url = el("div", "url");
  names.append(c.id, c.url);
  server.append(sw, names);
  first.append(server);
  const state = el("td");
  state.dataset.label = "State";
  c.pill = el("span", "pill");
  c.health = el("div", "health");
  state.append(c.pill, c.health);
  const weight = el("td");
  weight.dataset.label = "Weight";
  const wf = el("form", "weight");
  c.weight = el("input", "num");
  c.weight.type = "number";
  c.weight.min = "1";
  c.weight.max = "1000";
  c.weight.step = "1";
  c.weight.setAttribute("aria-label", "weight of " + id);
  const wb = el("button", "", "Set");
  wb.type = "submit";
  wf.append(c.weight, wb);
  wf.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const w = Number(c.weight.value);
    act(id, "PATCH", { weight: w }, "weight of " + id + " set to " + w).then(function () {
      c.weight.blur();
    });
  });
  weight.append(wf);
  function numCell(label, col) {
    const td = el("td", "r num");
    td.dataset.label = label;
    td.dataset.col = col;
    return td;
  }
  c.inflight = numCell("In flight", "inflight");
  c.rps = numCell("Req/s", "rps");
  c.err = numCell("Errors", "errors");
  c.lat = numCell("Latency", "latency");
  const spark = el("td");
  spark.dataset.label = "Latency trend";
  c.spark = svg("svg", { class: "spark", viewBox: "0 0 110 28", preserveAspectRatio: "none" });
  c.line = svg("polyline", {
    fill: "none",
    stroke: colourOf(id),
    "stroke-width": "1.5",
    "stroke-linejoin": "round",
    "vector-effect": "non-scaling-stroke",
  });
  c.spark.append(c.line);
  spark.append(c.spark);
  const actions = el("td");
  c.actions = el("div", "actions");
  actions.append(c.actions);
  c.actions.addEventListener("click", function (ev) {
    const b = ev.target.closest("button");
    if (!b) return;
    const a = b.dataset.action;
    if (a === "drain") act(id, "PATCH", { state: "draining" }, id + " is draining");
    else if (a === "disable") act(id, "PATCH", { state: "disabled" }, id + " is disabled");
    else if (a === "enable") act(id, "PATCH", { state: "enabled" }, id + " is enabled");
    else if (a === "remove") {
      b.textContent = "Confirm remove";
      b.dataset.action = "remove-confirm";
      b.className = "confirm";
      setTimeout(function () {
        if (b.isConnected && b.dataset.action === "remove-confirm") {
          b.textContent = "Remove";
          b.dataset.action = "remove";
          b.className = "danger";
        }
      }, 4000);
    } else if (a === "remove-confirm") act(id, "DELETE", undefined, id + " is being removed");
  });
  tr.append(first, state, weight, c.inflight, c.rps, c.err, c.lat, spark, actions);
  c.tr = tr;
  c.actionKey = "";
  return c;
}

function act(id, method, body, ok) {
  return api(method, "/api/servers/" + encodeURIComponent(id), body).then(
    function () {
      toast(ok);
    },
    function (e) {
      toast(e.message, true);
    },
  );
}

function renderTable(snap) {
  const tbody = $("#servers tbody");
  const seen = new Set();
  snap.servers.forEach(function (s, i) {
    seen.add(s.id);
    let c = rows.get(s.id);
    if (!c) {
      c = makeRow(s.id);
      rows.set(s.id, c);
    }
    if (tbody.children[i] !== c.tr) tbody.insertBefore(c.tr, tbody.children[i] || null);
    c.tr.dataset.state = s.state;
    c.url.textContent = s.url;
    const label = s.removing ? "removing" : s.state;
    if (c.pill.textContent !== label) {
      c.pill.textContent = label;
      c.pill.className = "pill s-" + s.state;
    }
    const h = s.lastHealth;
    c.health.textContent = h.at
      ? (h.ok ? "check ok" : "check failed") + (h.detail ? " · " + h.detail : "")
      : "";
    if (document.activeElement !== c.weight) c.weight.value = String(s.weight);
    c.inflight.textContent = String(s.inflight);
    c.rps.textContent = fmt(rpsOf(s.id), 1);
    const r = recent(s.id, 10000);
    c.err.textContent = r.req ? fmt((100 * r.err) / r.req, 1) + "%" : "–";
    c.lat.textContent = fmtMs(s.latencyEwmaMs);
    drawSpark(c, series.get(s.id) || []);
    const key = s.state + (s.removing ? "/removing" : "");
    if (key !== c.actionKey) {
      c.actionKey = key;
      c.actions.replaceChildren();
      if (s.removing) c.actions.append(el("span", "muted small", "draining, then removed"));
      else {
        if (s.state !== "draining" && s.state !== "disabled") {
          c.actions.append(button("Drain", "drain"));
        }
        if (s.state !== "disabled") c.actions.append(button("Disable", "disable"));
        if (s.state === "draining" || s.state === "disabled") {
          c.actions.append(button("Enable", "enable"));
        }
        c.actions.append(button("Remove", "remove", "danger"));
      }
    }
  });
  rows.forEach(function (c, id) {
    if (!seen.has(id)) {
      c.tr.remove();
      rows.delete(id);
    }
  });
  $("#servers-empty").hidden = snap.servers.length > 0;
}

function drawSpark(c, pts) {
  const tail = pts.slice(-60);
  if (tail.length < 2) {
    c.line.setAttribute("points", "");
    return;
  }
  let max = 0;
  tail.forEach(function (p) {
    if (p.lat > max) max = p.lat;
  });
  max = max || 1;
  // Fills the width once a minute of samples is in; until then it stretches what there is.
  const step = 110 / Math.max(tail.length - 1, 20);
  const off = 110 - (tail.length - 1) * step;
  c.line.setAttribute(
    "points",
    tail.map(function (p, i) {
      return (off + i * step).toFixed(1) + "," + (26 - (p.lat / max) * 24).toFixed(1);
    }).join(" "),
  );
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  const m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

function renderChart() {
  const chart = $("#chart");
  const W = Math.max(280, Math.round(chart.getBoundingClientRect().width));
  const H = 220, L = 44, R = 10, T = 10, B = 24;
  chart.setAttribute("viewBox", "0 0 " + W + " " + H);
  const now = latest ? latest.time : Date.now();
  // The window grows with the data, from one minute up to five.
  let earliest = now;
  series.forEach(function (pts) {
    if (pts.length && pts[0].t < earliest) earliest = pts[0].t;
  });
  const minutes = Math.min(5, Math.max(1, Math.ceil((now - earliest) / 60000)));
  const span = minutes * 60000;
  const from = now - span;
  $("#chart-window").textContent = "last " + (minutes === 1 ? "minute" : minutes + " minutes");
  let max = 0;
  series.forEach(function (pts) {
    pts.forEach(function (p) {
      if (p.rps > max) max = p.rps;
    });
  });
  max = niceMax(max * 1.1);
  const x = function (t) {
    return L + ((t - from) / span) * (W - L - R);
  };
  const y = function (v) {
    return T + (1 - v / max) * (H - T - B);
  };
  const kids = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = y(v).toFixed(1);
    kids.push(svg("line", { class: "grid", x1: L, x2: W - R, y1: yy, y2: yy }));
    const lab = svg("text", { x: L - 8, y: (Number(yy) + 4).toFixed(1), "text-anchor": "end" });
    lab.textContent = v >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
    kids.push(lab);
  }
  const ticks = minutes === 1 ? [60, 45, 30, 15, 0] : [];
  if (!ticks.length) { for (let k = minutes; k >= 0; k--) ticks.push(k * 60); }
  ticks.forEach(function (sec, i) {
    const tx = svg("text", {
      x: x(now - sec * 1000).toFixed(1),
      y: H - 6,
      "text-anchor": i === 0 ? "start" : sec === 0 ? "end" : "middle",
    });
    tx.textContent = sec === 0 ? "now" : sec % 60 ? "−" + sec + "s" : "−" + sec / 60 + "m";
    kids.push(tx);
  });
  const legend = $("#legend");
  legend.replaceChildren();
  series.forEach(function (pts, id) {
    const colour = colourOf(id);
    const vis = pts.filter(function (p) {
      return p.t >= from;
    });
    if (vis.length > 1) {
      kids.push(svg("polyline", {
        fill: "none",
        stroke: colour,
        "stroke-width": "2",
        "stroke-linejoin": "round",
        "stroke-linecap": "round",
        points: vis.map(function (p) {
          return x(p.t).toFixed(1) + "," + y(p.rps).toFixed(1);
        }).join(" "),
      }));
    }
    const item = el("span");
    const sw = el("i");
    sw.style.background = colour;
    item.append(sw, document.createTextNode(id));
    legend.append(item);
  });
  chart.replaceChildren.apply(chart, kids);
}

function onStateEvent(e) {
  const list = $("#events");
  const li = el("li");
  const t = el("time", "", clock(e.time));
  const msg = el("span");
  const who = el("strong", "", e.server);
  msg.append(who, document.createTextNode(" " + e.from + " → " + e.to + " · " + e.reason));
  li.append(t, msg);
  list.prepend(li);
  while (list.children.length > 40) list.lastChild.remove();
  $("#events-empty").hidden = true;
}

// ---- controls ----
$("#strategy").addEventListener("change", function (ev) {
  const name = ev.target.value;
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
  const body = { url: $("#add-url").value.trim() };
  const name = $("#add-name").value.trim();
  const w = $("#add-weight").value.trim();
  if (name) body.name = name;
  if (w) body.weight = Number(w);
  api("POST", "/api/servers", body).then(function (s) {
    toast("added " + s.id);
    ev.target.reset();
  }, function (e) {
    toast(e.message, true);
  });
});

globalThis.addEventListener("resize", function () {
  renderChart();
});

function start() {
  api("GET", "/api/strategy").then(function (st) {
    strategies = st.available;
    const sel = $("#strategy");
    sel.replaceChildren();
    strategies.forEach(function (n) {
      const o = el("option", "", n);
      o.value = n;
      sel.append(o);
    });
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
