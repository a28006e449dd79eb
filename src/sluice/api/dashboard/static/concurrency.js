/* Sluice dashboard, concurrency panel: the mode, the adaptive target over the last hour
 * (a stepped line, from the controller's decision events) and its latest decisions with
 * their reasons. Reads /dashboard/api/concurrency every 5 s. */
(function () {
  "use strict";

  const $ = (sel) => document.querySelector(sel);
  const NB = "\u00a0";
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const darkScheme = window.matchMedia("(prefers-color-scheme: dark)");
  let chart = null;

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function dur(ms) {
    if (!isNum(ms)) return "–";
    return ms < 1000 ? Math.round(ms) + NB + "ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + NB + "s";
  }
  function setTile(id, value, sub) {
    const tile = document.getElementById(id);
    tile.querySelector(".value").textContent = value;
    tile.querySelector(".sub").textContent = sub || "";
  }

  function render(d) {
    const s = d.status;
    const adaptive = d.mode === "adaptive";
    const [lo, hi] = d.bounds_per_worker;
    $("#concurrency-mode").textContent = adaptive
      ? "adaptive · " + lo + "–" + hi + " per worker · cooldown " + d.cooldown_s + NB + "s"
      : "static · WORKER_CONCURRENCY=" + d.configured + " per worker";
    setTile("tile-conc-target", isNum(s.target) ? String(s.target) : "–",
      isNum(s.min) ? "bounds " + s.min + "–" + s.max : (adaptive ? "no decision yet" : "adaptive off"));
    setTile("tile-conc-slots", String(d.slots_now), d.workers + " worker" + (d.workers === 1 ? "" : "s") +
      (d.override ? " · override " + d.override + "/worker" : ""));
    setTile("tile-conc-latency", dur(s.latency_ms), isNum(s.baseline_ms) ? "baseline " + dur(s.baseline_ms) : "");
    setTile("tile-conc-decisions", "↑" + (s.decisions.up || 0) + " ↓" + (s.decisions.down || 0),
      isNum(s.changed_at) ? "last " + new Date(s.changed_at * 1000).toLocaleTimeString() : "");
    $("#concurrency-reason").textContent = adaptive
      ? (d.override ? "Operator override in place: the controller holds." : (s.status ? "Now: " + s.status : ""))
      : "Adaptive concurrency is off (WORKER_CONCURRENCY_MODE=static): every worker runs its configured slots.";
    const log = $("#concurrency-log");
    log.replaceChildren(...d.history.slice(-8).reverse().map((c) => {
      const li = document.createElement("li");
      li.textContent = new Date(c.t * 1000).toLocaleTimeString() + " — " + c.reason;
      return li;
    }));
    draw(d);
  }

  function draw(d) {
    const host = $("#chart-concurrency");
    const scheme = darkScheme.matches ? "dark" : "light";
    const adaptive = d.mode === "adaptive";
    // Static mode has no controller and so no history to draw: the tiles say it all.
    $("#concurrency figure").hidden = !adaptive;
    if (!adaptive) {
      if (chart) { chart.destroy(); chart = null; }
      host.dataset.scheme = scheme;
      return;
    }
    const current = isNum(d.status.target) ? d.status.target : (d.slots_now || null);
    // From an hour ago (the target then is unknown when it changed since: a gap) to now.
    const xs = [d.now - 3600], ys = [d.history.length ? null : current];
    for (const c of d.history) { xs.push(c.t); ys.push(c.target); }
    xs.push(d.now); ys.push(current);
    const data = [xs, ys];
    if (chart && chart.scheme === scheme) {
      chart.setData(data);
    } else {
      if (chart) chart.destroy();
      const fg = cssVar("--muted"), grid = cssVar("--grid");
      const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
      chart = new uPlot({
        width: Math.max(240, host.clientWidth), height: 160,
        series: [{}, { label: "target slots", stroke: cssVar("--c1"), fill: cssVar("--c1a"), width: 2,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }],
        scales: { y: { range: (u, mn, mx) => [0, Math.max(4, (mx || 0) * 1.15)] } },
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        axes: [axis, Object.assign({ size: 60 }, axis)],
      }, data, host);
      chart.scheme = scheme;
    }
    host.dataset.scheme = scheme;
  }

  async function load() {
    try {
      const res = await fetch("/dashboard/api/concurrency", { credentials: "same-origin" });
      if (res.ok) render(await res.json());
    } catch (e) { /* the connection badge shows trouble */ }
  }

  new ResizeObserver(() => {
    if (chart) chart.setSize({ width: Math.max(240, $("#chart-concurrency").clientWidth), height: 160 });
  }).observe($("#concurrency"));
  darkScheme.addEventListener("change", () => { if (chart) { chart.destroy(); chart = null; } load(); });
  load();
  setInterval(load, 5000);
})();
