// Live pool dashboard: polls /api/v1/status (counts, provider health) and the pools' history
// (/dashboard/stats/vmpooler/history), and draws them as plain DOM and SVG. No external assets.
"use strict";
(function () {
  const STATUS_MS = 2000, HISTORY_MS = 60000;  // samples come once a minute
  const W = 260, H = 40, SVG = "http://www.w3.org/2000/svg";
  const state = {status: null, history: null, charts: {}};
  const $ = (id) => document.getElementById(id);
  const filterBox = $("filter"), sortBox = $("sort"), hoursBox = $("hours");

  // The view is in the address (?filter=&sort=&hours=), so that it can be bookmarked and shared.
  const query = new URLSearchParams(window.location.search);
  filterBox.value = query.get("filter") || "";
  if (query.get("sort") === "name") sortBox.value = "name";
  if (["1", "6", "24"].includes(query.get("hours"))) hoursBox.value = query.get("hours");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function shape(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }

  const numbers = (series) => (series || []).filter((v) => v !== null);
  const total = (series) => numbers(series).reduce((a, b) => a + b, 0);
  const family = (pool) => { const m = /^(\w+)-/.exec(pool); return m ? m[1] : pool; };
  const seconds = (t) => (t ? (t.median < 10 ? t.median.toFixed(1) : Math.round(t.median)) + " / " +
                              Math.round(t.slowest) : "–");
  const clock = (epoch) => new Date(epoch * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});

  // 2: its provider says why it cannot be filled; 1: empty; 0: fine.
  const trouble = (p) => (p.reason ? 2 : (p.max > 0 && p.ready === 0 ? 1 : 0));

  // Runs of consecutive buckets with a value: [[first, last], ...].
  function runs(series) {
    const found = [];
    let start = -1;
    series.forEach((v, i) => {
      if (v !== null && start < 0) start = i;
      if (v === null && start >= 0) { found.push([start, i - 1]); start = -1; }
    });
    if (start >= 0) found.push([start, series.length - 1]);
    return found;
  }

  // A step line through a series (gaps left open), or the closed area under it.
  function steps(series, dx, y, area) {
    let d = "";
    runs(series).forEach(([a, b]) => {
      d += area ? `M${a * dx} ${H}` : `M${a * dx} ${y(series[a])}`;
      for (let i = a; i <= b; i++) d += `L${i * dx} ${y(series[i])}L${(i + 1) * dx} ${y(series[i])}`;
      if (area) d += `L${(b + 1) * dx} ${H}Z`;
    });
    return d;
  }

  function bars(series, dx, height) {
    let d = "";
    series.forEach((v, i) => { if (v) d += `M${(i + 0.5) * dx} ${H}v${-Math.max(1, height(v))}`; });
    return d;
  }

  // A faint line at each whole hour (every fourth over a day), so that one can tell when.
  function hourLines(dx) {
    const h = state.history, every = h.hours > 6 ? 4 * 3600 : 3600;
    let d = "";
    for (let t = Math.ceil(h.start / every) * every; t <= h.now + 60; t += every) {
      d += `M${((t - h.start) / h.step * dx).toFixed(1)} 0V${H}`;
    }
    return d;
  }

  // Ready (area) against size (line) and target (dashed), checkouts and refusals as bars from the bottom.
  function chart(name, p, h) {
    const hours = state.history ? state.history.hours : 0;
    const key = [state.history && state.history.now, hours, p.ready, p.max, p.target].join("|");
    const cached = state.charts[name];
    if (cached && cached.key === key) return cached.node;
    const root = shape("svg", {"class": "spark", "width": W, "height": H, "viewBox": `0 0 ${W} ${H}`,
                               "role": "img", "data-points": "0"});
    if (h) {
      const dx = W / h.ready.length;
      const top = Math.max(1, ...numbers(h.size), ...numbers(h.ready), ...numbers(h.target), p.target || 0);
      const y = (v) => (H - 1 - (H - 3) * v / top).toFixed(1);
      const most = Math.max(1, ...numbers(h.checkouts), ...numbers(h.refused));
      const height = (v) => 0.3 * H * v / most;
      root.appendChild(shape("path", {"class": "ready", "d": steps(h.ready, dx, y, true)}));
      root.appendChild(shape("path", {"class": "out", "d": bars(h.checkouts, dx, height),
                                      "stroke-width": Math.max(1, dx * 0.8)}));
      root.appendChild(shape("path", {"class": "refused", "d": bars(h.refused, dx, height),
                                      "stroke-width": Math.max(1, dx * 0.8)}));
      root.appendChild(shape("path", {"class": "hours", "d": hourLines(dx)}));
      root.appendChild(shape("path", {"class": "size", "d": steps(h.size, dx, y, false)}));
      if (h.target) root.appendChild(shape("path", {"class": "target", "d": steps(h.target, dx, y, false)}));
      root.setAttribute("data-points", numbers(h.ready).length);
    }
    if (p.target !== undefined && !(h && h.target)) {  // a target now, none in the history (yet)
      const top = Math.max(1, p.max, p.target), ty = (H - 1 - (H - 3) * p.target / top).toFixed(1);
      root.appendChild(shape("path", {"class": "target", "d": `M0 ${ty}H${W}`}));
    }
    const title = shape("title", {});
    title.textContent = `${name}: ${p.ready} ready of ${p.max}` +
      (p.target !== undefined ? `, target ${p.target}` : "") +
      (h ? `; ${total(h.checkouts)} checked out, ${total(h.refused)} refused over the last ${hours} h`
         : "; no history yet");
    root.appendChild(title);
    state.charts[name] = {key: key, node: root};
    return root;
  }

  function drawPools() {
    const pools = (state.status && state.status.pools) || {};
    const history = (state.history && state.history.pools) || {};
    const wanted = filterBox.value.trim().toLowerCase();
    let names = Object.keys(pools).sort();
    if (wanted) {
      names = names.filter((n) => n.toLowerCase().includes(wanted) ||
                                  (pools[n].alias || []).some((a) => a.toLowerCase().includes(wanted)));
    }
    if (sortBox.value === "attention") names.sort((a, b) => trouble(pools[b]) - trouble(pools[a]));
    const rows = [];
    names.forEach((name) => {
      const p = pools[name], h = history[name];
      const level = trouble(p);
      const low = p.max > 0 && p.ready < p.max / 2;
      const tr = el("tr", {"data-pool": name,
                           "class": level === 2 ? "failing" : level === 1 ? "empty" : low ? "low" : ""});
      tr.appendChild(el("td", {"class": "name"}, name));
      tr.appendChild(el("td", {"class": "aliases"}, (p.alias || []).join(", ")));
      const cell = el("td", {"class": "chart"});
      cell.appendChild(chart(name, p, h));
      tr.appendChild(cell);
      ["ready", "max", "pending", "running"].forEach((k) => tr.appendChild(el("td", {"class": k}, p[k])));
      tr.appendChild(el("td", {"class": "out"}, h ? total(h.checkouts) : "–"));
      const refused = el("td", {"class": "refused"}, h ? total(h.refused) : "–");
      if (h && total(h.refused)) refused.setAttribute("data-bad", "");
      tr.appendChild(refused);
      ["clone", "boot"].forEach((phase) => {
        const t = h && h[phase];
        tr.appendChild(el("td", {"class": phase, "title": t ? `median / slowest of the last ${t.count} ` +
                                 `${phase}s, since ${new Date(t.since * 1000).toLocaleString()}` : ""}, seconds(t)));
      });
      rows.push(tr);
      if (p.reason) {
        const why = el("tr", {"class": "reason"});
        why.appendChild(el("td", {"colspan": "11"}, p.reason));
        rows.push(why);
      }
    });
    const body = document.querySelector("#pools tbody");
    body.replaceChildren(...rows);
    $("shown").textContent = `${names.length} of ${Object.keys(pools).length} pools`;
  }

  function drawProviders(providers) {
    const line = $("providers");
    const items = [el("span", {"class": "label"}, "providers")];
    if (!providers) {
      items.push(el("span", {"class": "provider unknown"}, "no manager has reported on them yet"));
    } else {
      Object.keys(providers).sort().forEach((name) => {
        const p = providers[name];
        const pools = Object.keys(p.pools || {});
        let text = `${name}: ${p.state}`;
        if (p.reason) text += ` — ${p.reason} (since ${p.since})`;
        if (pools.length) text += ` — failing for ${pools.join(", ")}`;
        items.push(el("span", {"class": `provider ${p.state}`, "data-provider": name}, text));
      });
    }
    line.replaceChildren(...items);
  }

  function drawPlatforms() {
    const pools = (state.status && state.status.pools) || {};
    const series = (state.history && state.history.running) || {};
    const now = {};
    Object.keys(pools).forEach((n) => { now[family(n)] = (now[family(n)] || 0) + pools[n].running; });
    const cards = Object.keys(now).sort().map((name) => {
      const card = el("div", {"class": "platform", "data-platform": name});
      card.appendChild(el("span", {"class": "name"}, name));
      card.appendChild(el("span", {"class": "running"}, now[name]));
      const s = series[name];
      const root = shape("svg", {"class": "spark", "width": 132, "height": 24, "viewBox": "0 0 132 24"});
      if (s && numbers(s).length) {
        const top = Math.max(1, ...numbers(s)), dx = 132 / s.length;
        const y = (v) => (23 - 21 * v / top).toFixed(1);
        let d = "";
        runs(s).forEach(([a, b]) => {
          d += `M${(a + 0.5) * dx} ${y(s[a])}`;
          for (let i = a + 1; i <= b; i++) d += `L${(i + 0.5) * dx} ${y(s[i])}`;
        });
        root.appendChild(shape("path", {"class": "line", "d": d}));
      }
      card.appendChild(root);
      return card;
    });
    $("platforms").replaceChildren(...cards);
  }

  function drawQueue(queue) {
    const items = ["pending", "cloning", "booting", "ready", "running", "completed", "total"].map((k) => {
      const group = el("div");
      group.appendChild(el("dt", {}, k));
      group.appendChild(el("dd", {"id": "queue-" + k}, queue[k]));
      return group;
    });
    $("queue").replaceChildren(...items);
  }

  function draw() {
    if (!state.status) return;
    drawPools();
    drawPlatforms();
  }

  function failed(e) { $("error").textContent = "cannot reach the API: " + e.message; }

  function getJson(url) {
    return fetch(url, {cache: "no-store"}).then((r) => {
      if (!r.ok) throw new Error("HTTP " + r.status + " from " + url);
      return r.json();
    });
  }

  function refreshStatus() {
    getJson("/api/v1/status").then((s) => {
      state.status = s;
      draw();
      drawQueue(s.queue || {});
      drawProviders(s.providers);
      $("summary").textContent = s.capacity.current + " of " + s.capacity.total + " VMs ready (" +
        s.capacity.percent + "%) — " + s.status.message;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      $("error").textContent = "";
      document.body.setAttribute("data-loaded", "true");
    }).catch(failed);
  }

  function refreshHistory() {
    getJson("/dashboard/stats/vmpooler/history?hours=" + hoursBox.value).then((h) => {
      state.history = h;
      $("chart-head").textContent = `ready against size, last ${h.hours} h`;
      draw();
      $("updated").title = `history from ${clock(h.start)} to ${clock(h.now + 60)}, ${h.step / 60} min a point`;
      document.body.setAttribute("data-history", "true");
    }).catch(failed);
  }

  function remember() {
    const view = new URLSearchParams();
    if (filterBox.value.trim()) view.set("filter", filterBox.value.trim());
    if (sortBox.value !== "attention") view.set("sort", sortBox.value);
    if (hoursBox.value !== "6") view.set("hours", hoursBox.value);
    const text = view.toString();
    window.history.replaceState(null, "", text ? "?" + text : window.location.pathname);
  }

  filterBox.addEventListener("input", () => { remember(); draw(); });
  sortBox.addEventListener("change", () => { remember(); draw(); });
  hoursBox.addEventListener("change", () => { remember(); refreshHistory(); });

  refreshStatus();
  refreshHistory();
  setInterval(refreshStatus, STATUS_MS);
  setInterval(refreshHistory, HISTORY_MS);
})();
