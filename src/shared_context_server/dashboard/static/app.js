// shared-context dashboard. Message content is untrusted text from agents: every value
// reaches the page through textContent or an attribute, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { meta: null, view: null, source: null, timers: {} };

// h("div", {class: "x"}, "text", child): strings become text nodes, never HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const data = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(data.message || `HTTP ${response.status}`);
  return data;
}

function showError(error) {
  const box = $("error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  if (seconds < 86400 * 30) return `${Math.round(seconds / 86400)} d ago`;
  return iso.slice(0, 10);
}

function when(iso) {
  return h("time", { class: "when", datetime: iso, title: iso }, ago(iso));
}

function debounce(name, fn, ms = 700) {
  clearTimeout(state.timers[name]);
  state.timers[name] = setTimeout(() => fn().catch(showError), ms);
}

// ---- live updates: one EventSource for the view on screen ----
function listen(url, onChange) {
  if (state.source) state.source.close();
  const source = new EventSource(url);
  state.source = source;
  source.addEventListener("open", () => { $("live").className = "live on"; $("live").title = "live"; });
  source.addEventListener("error", () => { $("live").className = "live"; $("live").title = "reconnecting"; });
  source.addEventListener("change", (event) => {
    onChange(JSON.parse(event.data));
    debounce("processes-count", refreshProcessCount, 1000);
  });
  source.addEventListener("gone", () => { source.close(); showError("this session no longer exists"); });
}

async function refreshProcessCount() {
  const rows = await api("/api/processes");
  $("process-count").textContent = String(rows.length);
  return rows;
}

// ---- sessions ----
function sessionCard(row) {
  const agents = row.agents.slice(0, 8).map((a) => h("span", { class: "chip", title: `${a.count} message(s)` }, a.agent));
  return h("article", { class: "card session", "data-session": row.id },
    h("div", {},
      h("a", { class: "purpose", href: `#/s/${encodeURIComponent(row.id)}` }, row.purpose),
      " ", h("span", { class: `badge status-${row.status}` }, row.status)),
    h("div", { class: "facts" }, `${row.message_count} message${row.message_count === 1 ? "" : "s"} · `, when(row.last_activity)),
    h("div", { class: "chips" }, agents),
    h("div", { class: "facts mono" }, row.id));
}

function resultCard(result) {
  const m = result.message;
  return h("a", { class: "card result", href: `#/s/${encodeURIComponent(m.session_id)}/${m.id}` },
    h("span", { class: "score" }, `${result.score}`),
    h("strong", {}, m.sender), " ", h("span", { class: "sub" }, `#${m.id} in ${m.session_id}`),
    h("div", {}, m.content.length > 240 ? m.content.slice(0, 239) + "…" : m.content));
}

async function viewSessions(main) {
  const status = h("select", { "aria-label": "status" },
    ...["all", "active", "completed", "archived"].map((v) => h("option", { value: v }, v)));
  const search = h("input", { type: "search", placeholder: "Search messages (fuzzy, as search_context)", "aria-label": "search" });
  const results = h("div", { class: "results" });
  const list = h("div", { class: "sessions" });
  status.value = sessionStorage.getItem("status") || "all";
  main.append(h("h1", {}, "Sessions"), h("div", { class: "toolbar" }, status, search), results, list);
  const load = async () => {
    const rows = await api(`/api/sessions?status=${status.value}`);
    list.replaceChildren(...(rows.length ? rows.map(sessionCard) : [h("div", { class: "empty card" }, "No sessions yet.")]));
  };
  const find = async () => {
    const q = search.value.trim();
    if (!q) { results.replaceChildren(); return; }
    const found = await api(`/api/search?q=${encodeURIComponent(q)}`);
    results.replaceChildren(...(found.length ? found.map(resultCard) : [h("div", { class: "empty" }, "No match.")]));
  };
  status.addEventListener("change", () => { sessionStorage.setItem("status", status.value); load().catch(showError); });
  search.addEventListener("input", () => debounce("search", find, 300));
  await load();
  listen("/api/events", () => debounce("sessions", load, 500));
}

// ---- a session's transcript ----
function messageCard(m, parents) {
  const parent = m.parent_message_id;
  const excerpt = parent !== null ? parents[String(parent)] : null;
  const reply = parent === null ? null : h("span", { class: "reply", "data-parent": parent, title: "in reply to" },
    `↳ #${parent}`, excerpt ? ` ${excerpt.sender}: ${excerpt.excerpt}` : "");
  const meta = m.metadata && Object.keys(m.metadata).length
    ? h("details", {}, h("summary", {}, "metadata"), h("pre", {}, JSON.stringify(m.metadata, null, 2)))
    : null;
  return h("article", { class: "card msg", id: `m-${m.id}`, "data-id": m.id, "data-visibility": m.visibility },
    h("header", {},
      h("span", { class: "sender" }, m.sender),
      h("span", { class: "stype" }, m.sender_type),
      h("span", { class: "type" }, m.message_type),
      h("span", { class: `badge vis-${m.visibility}` }, m.visibility.replace("_", " ")),
      when(m.created_at),
      h("span", { class: "mid mono" }, `#${m.id}`)),
    reply,
    h("div", { class: "content" }, m.content),
    acks(m),
    meta);
}

// A hand-off (metadata.to): who has acknowledged it, and who has not yet.
function acks(m) {
  if (!m.unacknowledged) return null;
  const done = Object.keys(m.acknowledged || {});
  return h("div", { class: "acks", "data-acks": m.id },
    done.length ? `✓ acknowledged by ${done.join(", ")}` : "not acknowledged yet",
    m.unacknowledged.length ? h("span", { class: "awaiting" }, ` · awaiting ${m.unacknowledged.join(", ")}`) : "");
}

function chart(data, width) {
  const agents = data.agents.slice(0, 8);
  if (!agents.length) return h("div", { class: "empty" }, "No messages to chart.");
  const rowH = 24, left = 150, right = 50, n = agents[0].counts.length;
  const barW = (width - left - right) / Math.max(n, 24);  // one busy minute is not a wall
  const max = Math.max(1, ...agents.flatMap((a) => a.counts));
  const svg = s("svg", { viewBox: `0 0 ${width} ${agents.length * rowH + 18}`, role: "img", "aria-label": "messages per agent over time" });
  agents.forEach((agent, i) => {
    const y = i * rowH;
    const name = agent.agent.length > 18 ? agent.agent.slice(0, 17) + "…" : agent.agent;
    svg.append(s("text", { x: 0, y: y + 16 }, name), s("line", { class: "axis", x1: left, x2: width - right, y1: y + rowH - 3, y2: y + rowH - 3 }));
    agent.counts.forEach((count, j) => {
      if (!count) return;
      const bh = Math.max(2, (count / max) * (rowH - 6));
      const start = new Date(Date.parse(data.start) + j * data.bucket_seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
      svg.append(s("rect", { class: `c${i}`, x: left + j * barW + 0.5, y: y + rowH - 3 - bh, width: Math.max(1, barW - 1), height: bh },
        s("title", {}, `${agent.agent}: ${count} from ${start} UTC`)));
    });
    svg.append(s("text", { x: width - right + 6, y: y + 16 }, agent.counts.reduce((a, b) => a + b, 0)));
  });
  const bottom = agents.length * rowH + 14;
  svg.append(s("text", { x: left, y: bottom }, data.start.slice(0, 16).replace("T", " ")),
    s("text", { x: width - right, y: bottom, "text-anchor": "end" }, data.end.slice(0, 16).replace("T", " ")));
  return svg;
}

async function viewSession(main, sid, focus) {
  const enc = encodeURIComponent(sid);
  const title = h("div");
  const chartBox = h("div", { class: "card chart" });
  const list = h("div", { class: "messages" });
  const earlier = h("button", { class: "more", hidden: true }, "Load earlier messages");
  const search = h("input", { type: "search", placeholder: "Search this session", "aria-label": "search session" });
  const results = h("div", { class: "results" });
  main.append(h("a", { href: "#/" }, "← Sessions"), title, h("h2", {}, "Messages per agent"), chartBox,
    h("div", { class: "toolbar" }, search), results, earlier, list);
  const seen = new Set();
  let first = null, last = 0;
  const header = async () => {
    const session = await api(`/api/sessions/${enc}`);
    title.replaceChildren(h("h1", {}, session.purpose),
      h("div", { class: "sub" }, h("span", { class: `badge status-${session.status}` }, session.status),
        ` ${session.message_count} message(s) you can see · created by ${session.created_by} · `, h("span", { class: "mono" }, session.id)));
  };
  // Drawn at the box's own width, so its text stays the page's size at any window width.
  const drawChart = async () => chartBox.replaceChildren(chart(await api(`/api/sessions/${enc}/activity`), Math.max(420, chartBox.clientWidth - 28)));
  const render = (messages, parents) => messages.filter((m) => !seen.has(m.id)).map((m) => {
    seen.add(m.id);
    return messageCard(m, parents);
  });
  const page = await api(`/api/sessions/${enc}/messages`);
  list.append(...render(page.messages, page.parents));
  if (page.messages.length) { first = page.messages[0].id; last = page.messages.at(-1).id; }
  earlier.hidden = !page.has_more;
  earlier.addEventListener("click", async () => {
    const older = await api(`/api/sessions/${enc}/messages?before=${first}`);
    const height = document.documentElement.scrollHeight;
    list.prepend(...render(older.messages, older.parents));
    if (older.messages.length) first = older.messages[0].id;
    earlier.hidden = !older.has_more;
    window.scrollBy(0, document.documentElement.scrollHeight - height);  // keep the place
  });
  list.addEventListener("click", (event) => {
    const reply = event.target.closest(".reply");
    const target = reply && $(`m-${reply.dataset.parent}`);
    if (target) target.scrollIntoView({ block: "center" });
  });
  search.addEventListener("input", () => debounce("search", async () => {
    const q = search.value.trim();
    if (!q) { results.replaceChildren(); return; }
    const found = await api(`/api/search?session=${enc}&q=${encodeURIComponent(q)}`);
    results.replaceChildren(...(found.length ? found.map(resultCard) : [h("div", { class: "empty" }, "No match.")]));
  }, 300));
  // An acknowledgement changes no message: re-read the latest page's and redraw them.
  const refreshAcks = async () => {
    const latest = await api(`/api/sessions/${enc}/messages`);
    latest.messages.forEach((m) => {
      const old = document.querySelector(`[data-acks="${m.id}"]`);
      const fresh = acks(m);
      if (old && fresh) old.replaceWith(fresh);
    });
  };
  await Promise.all([header(), drawChart()]);  // the layout settles before scrolling
  const target = focus && $(`m-${focus}`);
  if (target) { target.classList.add("target"); target.scrollIntoView({ block: "center" }); } else window.scrollTo(0, document.documentElement.scrollHeight);
  listen(`/api/events?session=${enc}&after=${last}`, (change) => {
    const fresh = change.messages || [];
    if (fresh.length) {
      const atBottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
      const cards = render(fresh, change.parents || {});
      cards.forEach((c) => c.classList.add("fresh"));
      list.append(...cards);
      last = Math.max(last, fresh.at(-1).id);
      if (atBottom) window.scrollTo(0, document.documentElement.scrollHeight);
      else if (cards.length) $("new-below").hidden = false;
    }
    debounce("session-header", async () => { await header(); await drawChart(); await refreshAcks(); }, 1000);
  });
}

// ---- connected processes ----
async function viewProcesses(main) {
  const body = h("tbody");
  main.append(h("h1", {}, "Connected now"),
    h("p", { class: "sub" }, "Server processes using this file (their heartbeat rows, as doctor reads them)."),
    h("table", {}, h("thead", {}, h("tr", {}, ...["agent", "type", "client", "pid", "host", "since", "last seen"].map((c) => h("th", {}, c)))), body));
  const load = async () => {
    const rows = await refreshProcessCount();
    body.replaceChildren(...(rows.length ? rows.map((p) => h("tr", {},
      h("td", {}, p.agent_id || "(not yet known)"), h("td", {}, p.agent_type), h("td", {}, p.client_name || ""),
      h("td", { class: "mono" }, p.pid), h("td", {}, p.host), h("td", {}, when(p.started_at)), h("td", {}, when(p.last_seen))))
      : [h("tr", {}, h("td", { class: "empty", colspan: 7 }, "No server process is using this file."))]));
  };
  await load();
  listen("/api/events", () => debounce("processes", load, 500));
  // A killed process commits nothing: its row ages out (15 s) without a change to follow.
  state.poll = setInterval(() => load().catch(showError), 10000);
}

// ---- claims ----
async function viewClaims(main) {
  const body = h("tbody");
  main.append(h("h1", {}, "Claims"),
    h("p", { class: "sub" }, "What agents are working on now: edits of a claimed file by another agent are refused by the hooks."),
    h("table", {}, h("thead", {}, h("tr", {}, ...["holder", "target", "reason", "since", "until"].map((c) => h("th", {}, c)))), body));
  const load = async () => {
    const rows = await api("/api/claims");
    body.replaceChildren(...(rows.length ? rows.map((c) => h("tr", { "data-claim": c.id },
      h("td", {}, c.holder), h("td", { class: "mono" }, c.target + (c.shared ? " (shared)" : "")),
      h("td", {}, c.reason || ""), h("td", {}, when(c.since)), h("td", {}, when(c.until))))
      : [h("tr", {}, h("td", { class: "empty", colspan: 5 }, "Nobody holds a claim."))]));
  };
  await load();
  listen("/api/events", () => debounce("claims", load, 500));
  // A claim also ends with its holder's process or its expiry, which commit nothing.
  state.poll = setInterval(() => load().catch(showError), 10000);
}

// ---- admin: audit log and memory ----
function filterBar(names, apply) {
  const inputs = names.map((n) => h("input", { placeholder: n, "aria-label": n, name: n }));
  const go = h("button", {}, "Filter");
  go.addEventListener("click", apply);
  inputs.forEach((i) => i.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); }));
  return [h("div", { class: "toolbar" }, ...inputs, go), () => new URLSearchParams(inputs.filter((i) => i.value.trim()).map((i) => [i.name, i.value.trim()]))];
}

async function pagedTable(main, heading, path, filters, columns, row) {
  const body = h("tbody");
  const more = h("button", { class: "more", hidden: true }, "More");
  let cursor = null;
  const [bar, params] = filterBar(filters, () => load(false).catch(showError));
  main.append(h("h1", {}, heading), bar,
    h("table", {}, h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", {}, c)))), body), more);
  const load = async (next) => {
    const query = params();
    if (next && cursor) query.set("cursor", cursor);
    const page = await api(`${path}?${query}`);
    const rows = page.entries.map(row);
    if (next) body.append(...rows);
    else body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { class: "empty", colspan: columns.length }, "Nothing here."))]));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load(true).catch(showError));
  await load(false);
  return load;
}

async function viewAudit(main) {
  const load = await pagedTable(main, "Audit log", "/api/audit", ["session_id", "agent_id", "action"],
    ["time", "agent", "action", "session", "target", "result", "detail"],
    (e) => h("tr", {}, h("td", {}, when(e.ts)), h("td", {}, e.agent_id, e.via ? ` via ${e.via}` : ""), h("td", {}, e.action),
      h("td", { class: "mono" }, e.session_id || ""), h("td", {}, e.target || ""), h("td", {}, e.result), h("td", {}, e.detail || "")));
  listen("/api/events", () => debounce("audit", () => load(false), 1000));
}

async function viewMemory(main) {
  await pagedTable(main, "Memory", "/api/memory", ["agent_id"], ["agent", "scope", "key", "size", "expires", "value"], (e) => {
    const cell = h("td", {});
    const show = h("button", {}, "show value");
    show.addEventListener("click", async () => {
      const q = new URLSearchParams({ agent_id: e.agent_id, key: e.key });
      if (e.session_id) q.set("session_id", e.session_id);
      try { cell.replaceChildren(h("pre", {}, JSON.stringify((await api(`/api/memory/value?${q}`)).value, null, 2))); } catch (err) { showError(err); }
    });
    cell.append(show);
    return h("tr", {}, h("td", {}, e.agent_id), h("td", { class: "mono" }, e.session_id || "global"), h("td", { class: "mono" }, e.key),
      h("td", {}, `${e.size} B`), h("td", {}, e.expires_at ? when(e.expires_at) : "never"), cell);
  });
}

// ---- routing ----
async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const main = h("main", { id: "main" });
  $("main").replaceWith(main);
  if (state.source) state.source.close();
  state.source = null;
  clearInterval(state.poll);
  $("live").className = "live";  // "on" again once the new view's stream is open
  $("new-below").hidden = true;
  showError(null);
  const view = parts[0] === "s" ? "session" : parts[0] || "sessions";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.view === view || (view === "session" && a.dataset.view === "sessions")));
  try {
    if (view === "session") await viewSession(main, parts[1], parts[2]);
    else if (view === "processes") await viewProcesses(main);
    else if (view === "claims") await viewClaims(main);
    else if (view === "audit") await viewAudit(main);
    else if (view === "memory") await viewMemory(main);
    else await viewSessions(main);
  } catch (error) { showError(error); }
}

async function start() {
  state.meta = await api("/api/meta");
  $("viewer").textContent = `showing ${state.meta.viewer}`;
  $("viewer").title = state.meta.database;
  document.querySelectorAll(".admin-only").forEach((a) => { a.hidden = !state.meta.admin; });
  $("new-below").addEventListener("click", () => { window.scrollTo(0, document.documentElement.scrollHeight); $("new-below").hidden = true; });
  window.addEventListener("scroll", () => {
    if (window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80) $("new-below").hidden = true;
  });
  window.addEventListener("hashchange", route);
  // "3 min ago" ages on screen; this touches the page only, never the server.
  setInterval(() => document.querySelectorAll("time.when").forEach((t) => { t.textContent = ago(t.dateTime); }), 30000);
  refreshProcessCount().catch(() => {});
  await route();
}

document.addEventListener("DOMContentLoaded", () => start().catch(showError));
