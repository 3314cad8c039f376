// The dashboard's script, loaded as a module (module scope keeps its names private).
//
// Server ids are unique only within their pool, so everything kept per server (rates,
// chart lines, colours, table rows) is keyed by "pool/id", as the history samples are.
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
const cards = new Map();
let last = null;
let latest = null;
let es = null;
let strategies = [];
/** False for the one pool named "default" of a config without pools: no pool names shown. */
let named = false;
/** The routesVersion whose routes are shown (or being fetched); null: fetch on the next snapshot. */
let routesVersion = null;
/** Whether the routes shown are the one catch-all route (null: none loaded yet). */
let routesTrivial = null;

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
function keyOf(pool, id) {
  return pool + "/" + id;
}
/** How the page names a server: its id, or "pool/id" when there are named pools. */
function labelOf(pool, id) {
  return named ? keyOf(pool, id) : id;
}
function poolPath(pool) {
  return "/api/pools/" + encodeURIComponent(pool);
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
    // After a reconnect this may be another lb process, whose versions count anew.
    routesVersion = null;
  });
  es.addEventListener("error", function () {
    if (es.readyState === EventSource.CLOSED) {
      setConn("down", "disconnected");
      // EventSource gives up on an error status; find out why, then try again.
      api("GET", "/api/pools").then(function () {
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
  named = snap.pools.length > 1 || snap.pools[0].name !== "default";
  const cur = { t: snap.time, servers: new Map() };
  snap.servers.forEach(function (s) {
    cur.servers.set(keyOf(s.pool, s.id), {
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
  const keys = new Set(snap.servers.map(function (s) {
    return keyOf(s.pool, s.id);
  }));
  series.forEach(function (_, key) {
    if (!keys.has(key)) series.delete(key);
  });
  $("#version").textContent = "v" + snap.version + " · up " + uptime(snap.uptimeSeconds);
  renderPools(snap);
  renderTables(snap);
  renderAddPools(snap);
  renderStats(snap);
  renderChart();
  renderTls(snap.tls || []);
  renderCluster(snap.cluster || { enabled: false });
  if (snap.routesVersion !== routesVersion) loadRoutes(snap.routesVersion);
  showRoutes();
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
    const key = keyOf(s.pool, s.id);
    rps += rpsOf(key);
    inflight += s.inflight;
    const r = recent(key, 60000);
    req += r.req;
    err += r.err;
    if (s.state === "healthy" && !s.removing) avail++;
  });
  $("#stat-rps").textContent = fmt(rps, 1);
  $("#stat-err").textContent = req ? fmt((100 * err) / req, 1) + "%" : "–";
  $("#stat-inflight").textContent = String(inflight);
  $("#stat-avail").textContent = avail + " / " + snap.servers.length;
}

/** One card per pool, in the snapshot's order; cards of pools a reload took out go. */
function renderPools(snap) {
  const box = $("#servers");
  const seen = new Set();
  snap.pools.forEach(function (p, i) {
    seen.add(p.name);
    let card = cards.get(p.name);
    if (!card) {
      card = makeCard(p.name);
      cards.set(p.name, card);
    }
    if (box.children[i] !== card.section) box.insertBefore(card.section, box.children[i] || null);
    renderCardHead(card, p);
    renderStrategy(card, p.strategy);
  });
  cards.forEach(function (card, name) {
    if (!seen.has(name)) {
      card.section.remove();
      cards.delete(name);
    }
  });
}

function makeCard(pool) {
  const section = $("#pool-template").content.firstElementChild.cloneNode(true);
  section.id = "pool-" + pool;
  section.dataset.pool = pool;
  const card = {
    section: section,
    title: section.querySelector(".pool-title"),
    sticky: section.querySelector(".sticky"),
    select: section.querySelector(".strategy select"),
    note: section.querySelector(".strategy-note"),
    tbody: section.querySelector("tbody"),
    empty: section.querySelector(".empty"),
    titleKey: "",
  };
  card.select.id = "strategy-" + pool;
  card.select.dataset.pool = pool;
  section.querySelector(".strategy label").htmlFor = card.select.id;
  fillStrategies(card.select);
  card.select.addEventListener("change", function () {
    switchStrategy(pool, card);
  });
  return card;
}

function fillStrategies(sel) {
  sel.replaceChildren();
  strategies.forEach(function (n) {
    const o = el("option", "", n);
    o.value = n;
    sel.append(o);
  });
}

function renderCardHead(card, p) {
  const key = named + "/" + p.servers;
  if (key !== card.titleKey) {
    card.titleKey = key;
    if (named) {
      card.title.replaceChildren(
        el("span", "muted", "Pool "),
        el("span", "pool-name", p.name),
        el("span", "muted small", " · " + p.servers + (p.servers === 1 ? " server" : " servers")),
      );
    } else card.title.replaceChildren(document.createTextNode("Servers"));
  }
  card.sticky.hidden = !p.sticky;
  const sticky = p.sticky ? "sticky · cookie " + p.sticky.cookie : "";
  if (card.sticky.textContent !== sticky) card.sticky.textContent = sticky;
}

function renderStrategy(card, st) {
  const sel = card.select;
  if (document.activeElement !== sel && sel.value !== st.name) sel.value = st.name;
  const o = st.options || {};
  const hashy = st.name === "consistent-hash" || st.name === "maglev";
  card.note.textContent = hashy
    ? "key " + o.key + (o.balanceFactor ? " · bound " + o.balanceFactor : "")
    : "";
}

function switchStrategy(pool, card) {
  const name = card.select.value;
  api("PUT", poolPath(pool) + "/strategy", { name: name }).then(function (st) {
    toast((named ? "strategy of pool " + pool : "strategy") + " switched to " + st.name);
    renderStrategy(card, st);
  }, function (e) {
    toast(e.message, true);
    const p = latest && latest.pools.find(function (x) {
      return x.name === pool;
    });
    if (p) card.select.value = p.strategy.name;
  });
}

function button(label, action, cls) {
  const b = el("button", cls || "", label);
  b.type = "button";
  b.dataset.action = action;
  return b;
}

function makeRow(pool, id) {
  const key = keyOf(pool, id);
  const tr = el("tr");
  tr.dataset.pool = pool;
  tr.dataset.id = id;
  const c = {};
  const first = el("td", "first");
  const server = el("div", "server");
  const sw = el("span", "swatch");
  sw.style.background = colourOf(key);
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
  c.weight.setAttribute("aria-label", "weight of " + key);
  const wb = el("button", "", "Set");
  wb.type = "submit";
  wf.append(c.weight, wb);
  wf.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const w = Number(c.weight.value);
    act(pool, id, "PATCH", { weight: w }, "weight of " + labelOf(pool, id) + " set to " + w)
      .then(function () {
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
    stroke: colourOf(key),
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
    if (b) onAction(pool, id, b);
  });
  tr.append(first, state, weight, c.inflight, c.rps, c.err, c.lat, spark, actions);
  c.tr = tr;
  c.actionKey = "";
  return c;
}

function onAction(pool, id, b) {
  const a = b.dataset.action;
  const who = labelOf(pool, id);
  if (a === "drain") act(pool, id, "PATCH", { state: "draining" }, who + " is draining");
  else if (a === "disable") act(pool, id, "PATCH", { state: "disabled" }, who + " is disabled");
  else if (a === "enable") act(pool, id, "PATCH", { state: "enabled" }, who + " is enabled");
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
  } else if (a === "remove-confirm") act(pool, id, "DELETE", undefined, who + " is being removed");
}

function act(pool, id, method, body, ok) {
  return api(method, poolPath(pool) + "/servers/" + encodeURIComponent(id), body).then(
    function () {
      toast(ok);
    },
    function (e) {
      toast(e.message, true);
    },
  );
}

/** Each pool's rows in its own card, in the snapshot's order. */
function renderTables(snap) {
  const seen = new Set();
  const placed = new Map();
  snap.servers.forEach(function (s) {
    const card = cards.get(s.pool);
    if (!card) return;
    const key = keyOf(s.pool, s.id);
    seen.add(key);
    let c = rows.get(key);
    if (!c) {
      c = makeRow(s.pool, s.id);
      rows.set(key, c);
    }
    const i = placed.get(s.pool) || 0;
    placed.set(s.pool, i + 1);
    const tbody = card.tbody;
    if (tbody.children[i] !== c.tr) tbody.insertBefore(c.tr, tbody.children[i] || null);
    renderRow(c, s, key);
  });
  rows.forEach(function (c, key) {
    if (!seen.has(key)) {
      c.tr.remove();
      rows.delete(key);
    }
  });
  cards.forEach(function (card, name) {
    card.empty.hidden = (placed.get(name) || 0) > 0;
  });
}

function renderRow(c, s, key) {
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
  c.rps.textContent = fmt(rpsOf(key), 1);
  const r = recent(key, 10000);
  c.err.textContent = r.req ? fmt((100 * r.err) / r.req, 1) + "%" : "–";
  c.lat.textContent = fmtMs(s.latencyEwmaMs);
  drawSpark(c, series.get(key) || []);
  const actionKey = s.state + (s.removing ? "/removing" : "");
  if (actionKey === c.actionKey) return;
  c.actionKey = actionKey;
  c.actions.replaceChildren();
  if (s.removing) {
    c.actions.append(el("span", "muted small", "draining, then removed"));
    return;
  }
  if (s.state !== "draining" && s.state !== "disabled") c.actions.append(button("Drain", "drain"));
  if (s.state !== "disabled") c.actions.append(button("Disable", "disable"));
  if (s.state === "draining" || s.state === "disabled") {
    c.actions.append(button("Enable", "enable"));
  }
  c.actions.append(button("Remove", "remove", "danger"));
}

/** The add form's pool choice: shown only when there are named pools. */
function renderAddPools(snap) {
  const sel = $("#add-pool");
  const names = snap.pools.map(function (p) {
    return p.name;
  });
  const have = Array.prototype.map.call(sel.options, function (o) {
    return o.value;
  });
  if (have.join("\n") !== names.join("\n")) {
    const keep = sel.value;
    sel.replaceChildren();
    names.forEach(function (n) {
      const o = el("option", "", n);
      o.value = n;
      sel.append(o);
    });
    if (names.indexOf(keep) >= 0) sel.value = keep;
  }
  $("#add-pool-label").hidden = !named;
  $("#add-form").classList.toggle("with-pool", named);
}

// ---- routes ----
function loadRoutes(version) {
  routesVersion = version;
  api("GET", "/api/routes").then(function (data) {
    if (routesVersion === version) renderRoutes(data.routes);
  }, function (e) {
    if (routesVersion === version) routesVersion = null;
    toast("routes: " + e.message, true);
  });
}

// The same words as the routing table of `lb check` (src/cli/check.ts).
/** What a route matches, one [what, value] per condition ([] for every request). */
function matchParts(m) {
  const parts = [];
  if (m.host) parts.push(["host", m.host.join("|")]);
  if (m.path) parts.push(["path", m.path + "*"]);
  if (m.method) parts.push(["method", m.method.join("|")]);
  Object.keys(m.headers || {}).forEach(function (h) {
    parts.push([h + ":", m.headers[h]]);
  });
  return parts;
}

/** What a route does on the way, besides choosing the pool. */
function routeExtras(r) {
  const extras = [];
  if (r.stripPrefix) extras.push("strip prefix");
  const l = r.rateLimit;
  if (l) extras.push("limit " + l.rate + "/" + l.per + "ms by " + l.key);
  const h = r.headers || {};
  ["request", "response"].forEach(function (d) {
    if (h[d] && Object.keys(h[d].set).length + h[d].remove.length > 0) {
      extras.push(d + " headers");
    }
  });
  return extras;
}

/** Each TLS listener's certificate; the card stays hidden when lb serves no TLS. */
function renderTls(certs) {
  $("#tls-card").hidden = certs.length === 0;
  const tbody = $("#tls tbody");
  tbody.replaceChildren();
  certs.forEach(function (c) {
    const tr = el("tr");
    tr.dataset.listener = c.listener;
    const expires = el("td", "r num" + (c.daysLeft < 14 ? " warn" : ""));
    expires.textContent = c.notAfter.slice(0, 10) + " (" + c.daysLeft + " days)";
    tr.append(
      el("td", "", c.listener),
      el("td", "", c.names.join(", ")),
      el("td", "muted", c.issuer),
      expires,
    );
    tbody.append(tr);
  });
}

/** The cluster's members (cluster.redis); the card stays hidden for an lb on its own. */
function renderCluster(c) {
  $("#cluster-card").hidden = !c.enabled;
  if (!c.enabled) return;
  $("#cluster-name").textContent = c.name + " · revision " + c.revision;
  const state = $("#cluster-state");
  state.textContent = c.connected
    ? c.members.length + " instances"
    : "Redis unreachable: serving with the last view, changes refused";
  state.className = "small" + (c.connected ? " muted" : " warn");
  const tbody = $("#cluster tbody");
  tbody.replaceChildren();
  c.members.forEach(function (m) {
    const tr = el("tr");
    tr.dataset.member = m.id;
    tr.append(
      el("td", "", m.id + (m.self ? " (this one)" : "")),
      el("td", "muted", m.url),
      el("td", "muted", m.version),
      el("td", "r num", uptime(m.uptimeSeconds)),
      el("td", "r num", String(m.requestRate)),
      el("td", "r num", String(m.revision)),
    );
    tbody.append(tr);
  });
}

function renderRoutes(routes) {
  const tbody = $("#routes tbody");
  tbody.replaceChildren();
  routesTrivial = routes.length === 1;
  routes.forEach(function (r, i) {
    const parts = matchParts(r.match || {});
    const extras = routeExtras(r);
    if (parts.length || extras.length) routesTrivial = false;
    const tr = el("tr");
    tr.dataset.route = r.name;
    const num = el("td", "r num muted", String(i + 1));
    const name = el("td", "route-name", r.name);
    name.dataset.label = "Route";
    const match = el("td");
    match.dataset.label = "Match";
    const list = el("div", "match");
    if (!parts.length) list.append(el("span", "muted", "every request"));
    parts.forEach(function (p) {
      const c = el("span", "cond");
      c.append(el("span", "muted", p[0] + " "), el("code", "", p[1]));
      list.append(c);
    });
    if (extras.length) list.append(el("span", "extra", "(" + extras.join(", ") + ")"));
    match.append(list);
    const pool = el("td");
    pool.dataset.label = "Pool";
    const a = el("a", "pool-link", r.pool);
    a.href = "#pool-" + r.pool;
    pool.append(a);
    tr.append(num, name, match, pool);
    tbody.append(tr);
  });
  showRoutes();
}

/** A config without pools and routes has one catch-all route: nothing worth a card. */
function showRoutes() {
  $("#routes-card").hidden = routesTrivial === null || (routesTrivial && !named);
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
    // Pool names have no "/", so the key's first one ends the pool.
    item.append(sw, document.createTextNode(named ? id : id.slice(id.indexOf("/") + 1)));
    legend.append(item);
  });
  chart.replaceChildren.apply(chart, kids);
}

function onStateEvent(e) {
  const list = $("#events");
  const li = el("li");
  const t = el("time", "", clock(e.time));
  const msg = el("span");
  const who = el("strong", "", e.pool ? labelOf(e.pool, e.server) : e.server);
  msg.append(who, document.createTextNode(" " + e.from + " → " + e.to + " · " + e.reason));
  li.append(t, msg);
  list.prepend(li);
  while (list.children.length > 40) list.lastChild.remove();
  $("#events-empty").hidden = true;
}

// ---- controls ----
$("#add-form").addEventListener("submit", function (ev) {
  ev.preventDefault();
  const pool = $("#add-pool").value;
  if (!pool) return toast("no pool to add to yet; wait for the page to connect", true);
  const body = { url: $("#add-url").value.trim() };
  const name = $("#add-name").value.trim();
  const w = $("#add-weight").value.trim();
  if (name) body.name = name;
  if (w) body.weight = Number(w);
  api("POST", poolPath(pool) + "/servers", body).then(function (s) {
    toast("added " + labelOf(pool, s.id));
    ev.target.reset();
    $("#add-pool").value = pool;
  }, function (e) {
    toast(e.message, true);
  });
});

globalThis.addEventListener("resize", function () {
  renderChart();
});

function start() {
  api("GET", "/api/pools").then(function (data) {
    strategies = data.pools[0].strategy.available;
    cards.forEach(function (card) {
      fillStrategies(card.select);
    });
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
