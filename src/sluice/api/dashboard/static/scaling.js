/* Sluice dashboard, Scaling panel: the predictive scaler's recommendation and forecast from
 * /dashboard/api/scaling, refreshed every 15 s (the leader recomputes once a minute). */
(function () {
  "use strict";

  const $ = (sel) => document.querySelector(sel);
  const isNum = (v) => typeof v === "number" && isFinite(v);

  function bars(points) {
    const host = $("#scaling-bars");
    if (!points || !points.length) {
      const none = document.createElement("span");
      none.className = "empty";
      none.textContent = "no forecast";
      host.replaceChildren(none);
      $("#scaling-scale").textContent = "";
      return;
    }
    const top = Math.max(1, ...points.map((p) => p.upper));
    $("#scaling-scale").textContent = "· bar height 0–" + Math.round(top) + "/min";
    host.replaceChildren(...points.map((p, i) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.title = "+" + (i + 1) + " min: " + p.expected.toFixed(1) + " expected, " + p.upper.toFixed(1) + " upper";
      const band = document.createElement("div");
      band.className = "band";
      band.style.height = ((p.upper - p.expected) / top * 100).toFixed(1) + "%";
      const expected = document.createElement("div");
      expected.className = "expected";
      expected.style.height = (p.expected / top * 100).toFixed(1) + "%";
      bar.append(band, expected);
      return bar;
    }));
  }

  function render(doc) {
    const tile = $("#scaling-desired");
    const value = tile.querySelector(".value");
    const sub = tile.querySelector(".sub");
    if (!isNum(doc.desired_workers)) {
      value.textContent = "–";
      sub.textContent = doc.enabled ? "waiting for the leader" : "scaling off (static)";
      tile.dataset.level = "none";
      $("#scaling-model").textContent = "";
      $("#scaling-reason").textContent = doc.reason || "";
      bars([]);
      return;
    }
    const rec = doc.recommendation;
    value.textContent = String(doc.desired_workers);
    sub.textContent = "bounds " + rec.min_workers + "–" + rec.max_workers + " · target " + Math.round(rec.target_utilization * 100) + "\u00a0%";
    tile.dataset.level = "ok";
    const f = doc.forecast;
    const hours = (f.history_minutes / 60).toFixed(f.history_minutes < 600 ? 1 : 0);
    $("#scaling-model").textContent = "· " + f.model + " model, " + hours + "\u00a0h of history";
    $("#scaling-reason").textContent = doc.reason + (f.notes.length ? " — " + f.notes.join("; ") : "");
    bars(f.points);
  }

  async function load() {
    try {
      const res = await fetch("/dashboard/api/scaling", { credentials: "same-origin" });
      if (res.ok) render(await res.json());
    } catch (e) { /* the connection badge shows an unreachable server */ }
  }

  load();
  setInterval(load, 15000);
})();
