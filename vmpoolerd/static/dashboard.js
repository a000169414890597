// Live pool dashboard: polls /api/v1/status and redraws. Plain JS, no external assets.
"use strict";
(function () {
  var INTERVAL_MS = 2000;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function drawPools(pools) {
    var body = document.querySelector("#pools tbody");
    var rows = [];
    Object.keys(pools).sort().forEach(function (name) {
      var p = pools[name];
      var pct = p.max > 0 ? Math.min(100, Math.round(100 * p.ready / p.max)) : 100;
      var tr = el("tr", {"data-pool": name, "class": p.max > 0 && p.ready === 0 ? "empty" : (pct < 50 ? "low" : "")});
      tr.appendChild(el("td", {"class": "name"}, name));
      tr.appendChild(el("td", {"class": "aliases"}, (p.alias || []).join(", ")));
      var bar = el("td", {"class": "bar"});
      var meter = el("div", {"class": "meter", "title": pct + "%"});
      meter.appendChild(el("div", {"style": "width:" + pct + "%"}));
      bar.appendChild(meter);
      tr.appendChild(bar);
      ["ready", "max", "pending", "running"].forEach(function (k) {
        tr.appendChild(el("td", {"class": k}, p[k]));
      });
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
  }

  function drawQueue(queue) {
    var dl = document.getElementById("queue");
    var items = [];
    ["pending", "cloning", "booting", "ready", "running", "completed", "total"].forEach(function (k) {
      var group = el("div");
      group.appendChild(el("dt", {}, k));
      group.appendChild(el("dd", {"id": "queue-" + k}, queue[k]));
      items.push(group);
    });
    dl.replaceChildren.apply(dl, items);
  }

  function refresh() {
    fetch("/api/v1/status", {cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (s) {
        drawPools(s.pools || {});
        drawQueue(s.queue || {});
        document.getElementById("summary").textContent =
          s.capacity.current + " of " + s.capacity.total + " VMs ready (" + s.capacity.percent + "%) — " +
          s.status.message;
        document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
        document.getElementById("error").textContent = "";
        document.body.setAttribute("data-loaded", "true");
      })
      .catch(function (e) { document.getElementById("error").textContent = "cannot reach the API: " + e.message; });
  }

  refresh();
  setInterval(refresh, INTERVAL_MS);
})();
