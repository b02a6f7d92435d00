// b24flow dashboard: log in from a printed link, draw the charts, refresh the job list.
// Served from the binary; no inline scripts (the Content-Security-Policy forbids them).
"use strict";

function loginFromLink() {
  const form = document.getElementById("login-form");
  if (!form) return;
  const m = location.hash.match(/token=([^&]+)/);
  if (!m) return;
  // The token came in the fragment, which never reaches a server or a log; drop it from the address bar.
  history.replaceState(null, "", location.pathname);
  if (document.getElementById("login-error")) return;
  document.getElementById("token").value = decodeURIComponent(m[1]);
  form.submit();
}

const COLORS = { succeeded: "#1f9254", failed: "#c0392b", discarded: "#888", accepted: "#2f6fed", p50: "#2f6fed", p95: "#b7791f" };

async function drawCharts() {
  const plots = document.querySelectorAll(".plot[data-series]");
  if (!plots.length || typeof uPlot === "undefined") return;
  const cache = {};
  for (const el of plots) {
    const win = el.dataset.window;
    if (!cache[win]) {
      cache[win] = fetch("/api/stats/timeseries?window=" + win, { credentials: "same-origin" }).then(r => r.ok ? r.json() : []);
    }
    const buckets = await cache[win];
    const xs = buckets.map(b => Date.parse(b.start) / 1000);
    let series, data;
    if (el.dataset.series === "throughput") {
      const keys = ["accepted", "succeeded", "failed", "discarded"];
      series = [{}].concat(keys.map(k => ({ label: k, stroke: COLORS[k], width: 2, fill: k === "succeeded" ? "rgba(31,146,84,.08)" : undefined })));
      data = [xs].concat(keys.map(k => buckets.map(b => b[k])));
    } else {
      const points = { show: true, size: 6 };
      series = [{}, { label: "p50", stroke: COLORS.p50, width: 2, spanGaps: true, points }, { label: "p95", stroke: COLORS.p95, width: 2, spanGaps: true, points }];
      data = [xs, buckets.map(b => b.latency_p50_seconds), buckets.map(b => b.latency_p95_seconds)];
    }
    const width = () => Math.max(200, el.clientWidth);
    const opts = { width: width(), height: 220, series, legend: { live: false }, scales: { x: { time: true } }, axes: [{}, { size: 50 }] };
    const plot = new uPlot(opts, data, el);
    new ResizeObserver(() => plot.setSize({ width: width(), height: 220 })).observe(el);
  }
}

function liveJobs() {
  const table = document.getElementById("jobs-table");
  const live = document.getElementById("live");
  if (!table || !live) return;
  const refresh = async () => {
    if (!live.checked || document.hidden) return;
    try {
      const r = await fetch(table.dataset.rows, { credentials: "same-origin" });
      if (r.ok) document.getElementById("job-rows").innerHTML = await r.text();
      else if (r.status === 401) location.href = "/dashboard/login";
    } catch (_) { /* offline for a moment: try again next tick */ }
  };
  setInterval(refresh, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  loginFromLink();
  drawCharts();
  liveJobs();
});
