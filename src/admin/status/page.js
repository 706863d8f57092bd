"use strict";
// The status page: polls /status.json every second, keeps the last five minutes of request
// counts per backend to draw rates, and calls the admin API for drain and weight.
(function () {
  const POLL_MS = 1000;
  const HISTORY = 300; // samples kept per backend: five minutes at one a second
  const $ = (id) => document.getElementById(id);
  const tokenInput = $("token");
  tokenInput.value = new URLSearchParams(location.search).get("token") || "";

  // address -> [{t, requests}], oldest first; "" holds the balancer's total.
  const samples = new Map();
  // address -> its table row.
  const rowsByAddress = new Map();

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const token = tokenInput.value.trim();
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  // The JSend answer of an admin route, as {ok, status, message, data}.
  async function call(method, path, body) {
    const res = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let json = null;
    try { json = await res.json(); } catch (_) { /* not JSON */ }
    const message = json && json.data && (json.data.title || json.data.message) || json && typeof json.data === "string" && json.data || res.statusText;
    return { ok: res.ok, status: res.status, message, data: json && json.data };
  }

  function record(key, t, requests, buckets) {
    let list = samples.get(key);
    if (!list) samples.set(key, (list = []));
    list.push({ t, requests, buckets });
    if (list.length > HISTORY + 1) list.shift();
    return list;
  }

  // Requests per second between successive samples.
  function rates(list) {
    const out = [];
    for (let i = 1; i < list.length; i++) {
      const dt = (list[i].t - list[i - 1].t) / 1000;
      const dn = list[i].requests - list[i - 1].requests;
      out.push(dt > 0 && dn >= 0 ? dn / dt : 0);
    }
    return out;
  }

  // The last minute at first, up to five as samples come in.
  function sparkline(values) {
    const w = 120, h = 24;
    const max = Math.max(1, ...values);
    const span = Math.min(HISTORY, Math.max(60, values.length));
    const step = w / (span - 1);
    const start = w - step * (values.length - 1);
    const points = values.map((v, i) =>
      (start + i * step).toFixed(1) + "," + (h - 1 - (v / max) * (h - 2)).toFixed(1)).join(" ");
    return '<svg width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + " " + h +
      '" role="img"><polyline points="' + points + '"/></svg>';
  }

  const fmtRate = (r) => (r >= 100 ? r.toFixed(0) : r.toFixed(1));
  function fmtUptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }
  function fmtAgo(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 60 ? s.toFixed(1) + " s ago" : Math.round(s / 60) + " min ago";
  }
  function fmtChecks(b) {
    return b.checks ? b.checks_failed + "/" + b.checks + " failed" : "";
  }
  const fmtMs = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms";

  // The q-quantile of a histogram's samples per bucket, as Prometheus' histogram_quantile
  // (and the server's HistogramSnapshot::quantile) estimates it: linear within the bucket
  // holding the rank; the +Inf bucket gives the highest bound. null without samples.
  function quantile(counts, bounds, q) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) return null;
    const rank = q * total;
    let below = 0;
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i];
      if (n === 0 || below + n < rank) { below += n; continue; }
      if (i >= bounds.length) break;
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * Math.min(1, Math.max(0, (rank - below) / n));
    }
    return bounds[bounds.length - 1];
  }

  // p50 and p99 over the last minute, from the oldest bucket counts kept within it; the
  // backend's whole life until a minute has passed. null when nothing was answered.
  function recentLatency(list, bounds) {
    const now = list[list.length - 1];
    const since = now.t - 60000;
    const old = list.find((s) => s.t >= since) || list[0];
    const counts = old === now || !old.buckets ? now.buckets
      : now.buckets.map((n, i) => n - (old.buckets[i] || 0));
    const p50 = quantile(counts, bounds, 0.5);
    return p50 === null ? null : { p50, p99: quantile(counts, bounds, 0.99) };
  }

  const CELLS = ["address", "state", "weight", "in-flight", "spark", "requests", "c1xx", "c2xx",
    "c3xx", "c4xx", "c5xx", "failures", "ejections", "last-check", "error", "latency", "actions"];

  function newRow(address) {
    const tr = document.createElement("tr");
    tr.dataset.address = address;
    for (const name of CELLS) {
      const td = document.createElement("td");
      td.className = name;
      tr.appendChild(td);
    }
    tr.querySelector(".address").textContent = address;
    tr.querySelector(".state").innerHTML = '<span class="badge"></span>';
    const actions = tr.querySelector(".actions");
    const drain = document.createElement("button");
    drain.className = "drain";
    drain.textContent = "drain";
    drain.addEventListener("click", () => act(drain, "DELETE", { address },
      (d) => "drained " + d.server + " (" + d.state + ", " + (d.in_flight ?? "?") + " in flight)"));
    const weight = document.createElement("input");
    weight.type = "number"; weight.min = "1"; weight.max = "1000"; weight.className = "weight-input";
    const set = document.createElement("button");
    set.className = "set-weight";
    set.textContent = "set weight";
    set.addEventListener("click", () => act(set, "POST", { address, weight: Number(weight.value) },
      (d) => "weight of " + d.server + " is " + d.weight));
    actions.append(drain, " ", weight, " ", set);
    return tr;
  }

  async function act(button, method, body, describe) {
    const message = $("message");
    button.disabled = true;
    try {
      const r = await call(method, "/register", body);
      message.className = r.ok ? "ok" : "refused";
      message.textContent = r.ok ? describe(r.data) : "refused (" + r.status + "): " + r.message;
    } catch (e) {
      message.className = "refused";
      message.textContent = "failed: " + e;
    } finally {
      button.disabled = false;
    }
  }

  function render(data, now) {
    $("version").textContent = "v" + data.version;
    $("algorithm").textContent = data.algorithm || "custom";
    $("uptime").textContent = fmtUptime(data.uptime_secs);
    $("connections-open").textContent = data.connections_open ?? "–";
    $("connections-accepted").textContent = data.connections_accepted ?? "–";
    $("requests").textContent = data.requests;
    $("in-flight").textContent = data.in_flight;
    $("no-backend").textContent = data.no_backend;
    $("retries").textContent = data.retries;
    $("queue").textContent = data.queue_waiting == null ? "–" : data.queue_waiting + " / " + data.queue_timeouts;
    const total = rates(record("", now, data.requests + data.no_backend));
    $("rate").textContent = total.length ? fmtRate(total[total.length - 1]) : "–";

    const withLatency = data.backends.some((b) => b.latency_ms);
    for (const el of document.querySelectorAll(".latency")) el.hidden = !withLatency;

    const tbody = document.querySelector("#backends tbody");
    const seen = new Set();
    for (const b of data.backends) {
      seen.add(b.address);
      let tr = rowsByAddress.get(b.address);
      if (!tr) {
        tr = newRow(b.address);
        tr.querySelector(".weight-input").value = b.weight;
        rowsByAddress.set(b.address, tr);
      }
      tbody.appendChild(tr); // keeps the server's order
      tr.dataset.state = b.state;
      const set = (name, text) => { tr.querySelector("." + name).textContent = text; };
      tr.querySelector(".badge").textContent = b.state;
      set("weight", b.weight);
      set("in-flight", b.in_flight);
      set("requests", b.requests);
      for (const cls of ["1xx", "2xx", "3xx", "4xx", "5xx"]) set("c" + cls, b.responses[cls]);
      set("failures", b.failures + (b.body_errors ? " (+" + b.body_errors + " body)" : ""));
      set("ejections", b.ejections);
      set("last-check", fmtAgo(b.last_check));
      tr.querySelector(".last-check").title = fmtChecks(b);
      set("error", b.last_error || "");
      tr.querySelector(".error").title = b.last_error || "";
      const history = record(b.address, now, b.requests, b.response_time_buckets);
      const recent = recentLatency(history, data.latency_bounds_ms);
      const latency = tr.querySelector(".latency");
      latency.hidden = !withLatency;
      latency.textContent = recent ? fmtMs(recent.p50) + " / " + fmtMs(recent.p99) : "–";
      latency.title = b.latency_ms
        ? "last minute; since it joined: " + fmtMs(b.latency_ms.p50) + " / " + fmtMs(b.latency_ms.p99)
        : "";
      const r = rates(history);
      const spark = tr.querySelector(".spark");
      spark.innerHTML = sparkline(r);
      spark.title = r.length ? fmtRate(r[r.length - 1]) + " requests/s" : "";
      spark.dataset.rate = r.length ? r[r.length - 1] : 0;
      tr.querySelector(".drain").disabled = b.state === "draining";
    }
    for (const [address, tr] of [...rowsByAddress]) {
      if (!seen.has(address)) {
        tr.remove();
        rowsByAddress.delete(address);
      }
    }
    for (const key of [...samples.keys()]) {
      if (key && !seen.has(key)) samples.delete(key);
    }
    $("empty").hidden = data.backends.length > 0;
  }

  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const banner = $("banner");
    try {
      const r = await call("GET", "/status.json");
      if (r.ok) {
        banner.hidden = true;
        render(r.data, Date.now());
        $("updated").textContent = "updated " + new Date().toLocaleTimeString();
        document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      } else {
        banner.hidden = false;
        banner.textContent = "refused (" + r.status + "): " + r.message;
      }
    } catch (e) {
      banner.hidden = false;
      banner.textContent = "cannot reach the balancer: " + e;
    }
    timer = setTimeout(poll, POLL_MS);
  }
  poll();
})();
