/* Sluice dashboard, "Brokers" panel: each broker's circuit breaker (refreshed every 5 s)
 * and the bulk replay of dead letters by filter: a dry run counts what the filter selects,
 * and the replay (after a confirmation) requeues no more than that count. Built on the
 * helpers app.js exports as window.SluiceDashboard. */
(function () {
  "use strict";

  const { el, api, toast, confirmDialog, dur } = window.SluiceDashboard;
  const $ = (sel) => document.querySelector(sel);
  const LEVEL = { closed: "ok", half_open: "warn", open: "crit" };
  const LABEL = { closed: "closed", half_open: "half-open", open: "open" };
  let counted = null; // {filter, matched} of the last dry run

  function since(ms, now) {
    return typeof ms === "number" ? dur(Math.max(0, now - ms)) + " ago" : "–";
  }

  async function loadBreakers() {
    let data;
    try { data = await api("api/breakers"); } catch (e) { return; }
    const body = $("#breakers-table tbody");
    const rows = data.breakers.map((b) => {
      const left = b.state === "open" && typeof b.until_ms === "number" ? Math.max(0, b.until_ms - data.now_ms) : null;
      return el("tr", { "data-broker": b.broker, "data-state": b.state },
        el("td", { "data-label": "Broker", class: "nowrap" }, b.broker),
        el("td", { "data-label": "State", class: "nowrap" },
          el("span", { class: "badge " + (LEVEL[b.state] || "") }, LABEL[b.state] || b.state),
          left !== null ? el("span", { class: "muted small" }, " " + dur(left) + " left") : null),
        el("td", { "data-label": "Since", class: "nowrap" }, since(b.since_ms, data.now_ms)),
        el("td", { "data-label": "Reason", class: "reason-cell" }, b.reason || "–"),
        el("td", { "data-label": "Fallback answers" }, String(b.fallbacks)),
        el("td", { "data-label": "Opened" }, b.transitions.open + "×"));
    });
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6", class: "muted" },
      "No breaker has state yet: workers with SLUICE_BREAKER_ENABLED=true create one per AI broker at its first call."))]));
  }

  function filter() {
    const f = {};
    for (const name of ["error", "since", "until", "conversation", "broker"]) {
      const v = $("#rp-" + name).value.trim();
      if (v) f[name] = v;
    }
    if ($("#rp-all").checked) f.all = true;
    return f;
  }

  function forget() {
    counted = null;
    $("#rp-replay").disabled = true;
  }

  async function dryRun(e) {
    e.preventDefault();
    const f = filter();
    try {
      const r = await api("api/dead-letters/replay", "POST", { ...f, dry_run: true });
      counted = { filter: JSON.stringify(f), matched: r.matched };
      $("#rp-result").textContent = r.matched + " dead letter" + (r.matched === 1 ? "" : "s") + " match";
      $("#rp-replay").disabled = r.matched === 0;
    } catch (err) {
      forget();
      $("#rp-result").textContent = "";
      toast(err.message, true);
    }
  }

  async function replayNow() {
    const f = filter();
    if (!counted || counted.filter !== JSON.stringify(f)) { forget(); return; }
    const n = counted.matched;
    if (!(await confirmDialog("Replay " + n + " dead letter" + (n === 1 ? "" : "s") + "?",
      "They go back to the queue with fresh attempts, each at the head of its conversation.", "Replay"))) return;
    try {
      const r = await api("api/dead-letters/replay", "POST", { ...f, dry_run: false, expected: n });
      $("#rp-result").textContent = r.requeued + " requeued" + (r.skipped ? ", " + r.skipped + " skipped (no longer dead)" : "");
      toast(r.requeued + " dead letters queued again");
    } catch (err) {
      if (err.status === 409 && err.data) {
        counted.matched = err.data.matched;
        $("#rp-result").textContent = err.data.matched + " match now: confirm again";
      } else {
        toast(err.message, true);
      }
      return;
    }
    forget();
  }

  $("#replay-form").addEventListener("submit", dryRun);
  $("#replay-form").addEventListener("input", forget);
  $("#rp-replay").addEventListener("click", replayNow);
  $("#breakers-refresh").addEventListener("click", loadBreakers);
  loadBreakers();
  const timer = setInterval(loadBreakers, 5000);
  // Signing out: no poll may go out after the session ends (it would only get a 401).
  $("#logout").addEventListener("click", () => clearInterval(timer));
})();
