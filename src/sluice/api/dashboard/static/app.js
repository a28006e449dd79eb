/* Sluice operations dashboard: vanilla JS, no build step.
 * Live data: a server-sent event stream (/dashboard/events) pushes a snapshot every 1.5 s;
 * chart series, dead letters and alert history are fetched from /dashboard/api/... .
 * Every state-changing request carries the session's CSRF token in X-CSRF-Token. */
(function () {
  "use strict";

  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  let last = null;          // latest snapshot
  let span = "1h";          // chart range
  let bdWindow = "5m";      // breakdown window
  let lastDead = null;      // dead count when the list was last loaded
  let lastHistoryKey = "";  // re-fetch alert history when the active set changes
  const charts = {};

  // ------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const NB = "\u00a0"; // a number and its unit never part at a line break ("95" / "%")
  const pct = (v, d = 1) => (isNum(v) ? (v * 100).toFixed(d) + NB + "%" : "–");
  function dur(ms) {
    if (!isNum(ms)) return "–";
    if (ms < 1000) return Math.round(ms) + NB + "ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + NB + "s";
    if (ms < 3600000) return (ms / 60000).toFixed(1) + NB + "min";
    return (ms / 3600000).toFixed(1) + NB + "h";
  }
  const rate = (v) => (isNum(v) ? (v >= 10 ? v.toFixed(0) : v.toFixed(2)) + "/s" : "–");
  const clock = (sec) => new Date(sec * 1000).toLocaleTimeString();
  const ago = (sec) => (isNum(sec) ? dur(Math.max(0, Date.now() - sec * 1000)) + " ago" : "–");

  // Higher is worse unless direction is "below".
  function level(value, warning, critical, direction) {
    if (!isNum(value)) return "none";
    const below = direction === "below";
    const beyond = (t) => isNum(t) && (below ? value < t : value > t);
    if (beyond(critical)) return "crit";
    if (beyond(warning)) return "warn";
    return "ok";
  }

  function toast(text, bad) {
    const t = $("#toast");
    t.textContent = text;
    t.className = bad ? "show bad" : "show";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.className = ""), 4000);
  }

  async function api(path, method, body) {
    const opts = { method: method || "GET", credentials: "same-origin", headers: {} };
    if (opts.method !== "GET") opts.headers["X-CSRF-Token"] = CSRF;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch("/dashboard/" + path, opts);
    if (res.status === 401) {
      location.href = "/dashboard/login";
      throw new Error("not logged in");
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.detail) || res.statusText);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function confirmDialog(title, text, okLabel) {
    const dlg = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-ok").textContent = okLabel || "Confirm";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
      dlg.returnValue = "cancel";
      dlg.showModal();
    });
  }

  // ------------------------------------------------------------ tiles

  function setTile(id, value, sub, lvl) {
    const tile = document.getElementById(id);
    $(".value", tile).textContent = value;
    $(".sub", tile).textContent = sub || "";
    tile.dataset.level = lvl || "none";
  }

  function renderTiles(s) {
    const th = s.thresholds;
    const c = th.sla_compliance;
    for (const w of ["1m", "5m", "1h"]) {
      const win = s.windows[w];
      const v = win.sla_compliance.within_warning;
      setTile("tile-sla-" + w, pct(v), win.completed + " answered · target " + pct(th.sla_objective, 0),
        level(v, c.warning, c.critical, "below"));
    }
    const w5 = s.windows["5m"], w1 = s.windows["1m"];
    const p95 = w5.sla_duration_ms.p95;
    setTile("tile-p95", dur(p95), "p50 " + dur(w5.sla_duration_ms.p50) + " · p99 " + dur(w5.sla_duration_ms.p99),
      level(p95, th.sla_warning_ms, th.sla_critical_ms));
    const depth = s.counts.waiting + s.counts.delayed;
    const wait95 = w1.queue_wait_ms.p95;
    setTile("tile-depth", String(depth), "running " + s.counts.active + " · wait p95 " + dur(wait95),
      level(wait95, th.queue_wait_ms.warning, th.queue_wait_ms.critical));
    const parts = s.partitions || [];
    const partTile = document.getElementById("tile-partitions");
    partTile.hidden = parts.length < 2;
    if (parts.length > 1) {
      const depths = parts.map((p) => p.waiting + p.delayed);
      setTile("tile-partitions", depths.join(" · "),
        parts.map((p) => "p" + p.partition + " running " + p.active).join(" · "), "none");
    }
    const age = s.counts.oldest_waiting_age_ms;
    setTile("tile-oldest", depth ? dur(age) : "none", "drain " + (isNum(s.capacity.drain_seconds) ? dur(s.capacity.drain_seconds * 1000) : "–"),
      level(age, th.oldest_waiting_ms.warning, th.oldest_waiting_ms.critical));
    setTile("tile-throughput", rate(w1.throughput_per_s), w1.completed + " completed · in " + rate(w1.arrival_per_s), "none");
    const util = isNum(w1.utilization) ? w1.utilization : s.workers_total.utilization_now;
    setTile("tile-utilization", pct(util, 0), s.workers_total.busy + " / " + s.workers_total.slots + " slots busy",
      level(util, th.utilization.warning, th.utilization.critical));
    setTile("tile-failure", pct(w5.failure_rate), w5.failed + " failed · " + s.counts.dead + " dead",
      level(w5.failure_rate, th.failure_rate.warning, th.failure_rate.critical));
    setTile("tile-paused", s.counts.paused ? "paused" : "running", s.counts.paused ? "no new jobs start" : "workers take jobs",
      s.counts.paused ? "warn" : "ok");
    const sp = s.intake_spool;
    if (sp) {
      const failing = !!sp.last_error;
      setTile("tile-spool", failing ? "failing" : String(sp.depth),
        failing ? "cannot write: webhooks refused (503)" :
          sp.depth ? "oldest " + dur(sp.oldest_age_s * 1000) + " · waiting for Redis" : sp.replayed + " replayed",
        failing ? "crit" : sp.oldest_age_s > 120 ? "crit" : sp.depth ? "warn" : "ok");
    } else {
      setTile("tile-spool", "–", "no spool in this process", "none");
    }
    const p = s.profile;
    setTile("tile-profile", p.effective, "concurrency " + s.effective.concurrency + " · rate " + (s.effective.rate_limit || "∞"),
      p.effective === "legacy" ? "warn" : "ok");
    const firing = s.alerts.filter((a) => a.status === "firing");
    const worst = firing.some((a) => a.severity === "critical") ? "crit" : firing.length ? "warn" : "ok";
    setTile("tile-alerts", String(firing.length), s.alerts.length - firing.length + " pending", worst);
  }

  // ------------------------------------------------------------ breakdown

  const HOPS = [
    ["intake_lag", "intake lag"],
    ["queue_wait", "queue wait"],
    ["handling", "broker"],
    ["reply", "reply"],
  ];

  function renderBreakdown(s) {
    const win = s.windows[bdWindow];
    const b = win.breakdown_ms;
    const total = isNum(b.sla) ? b.sla : HOPS.reduce((a, [k]) => a + (b[k] || 0), 0);
    const box = $("#breakdown-bars");
    box.replaceChildren();
    const stack = el("div", { class: "stack", "aria-hidden": "true" });
    for (const [k, label] of HOPS) {
      const v = b[k];
      const share = total > 0 && isNum(v) ? v / total : 0;
      const seg = el("span", { class: "seg-" + k, title: label + " " + dur(v) });
      seg.style.width = (share * 100).toFixed(2) + "%";
      stack.append(seg);
      const row = el("div", { class: "bar-row" },
        el("span", { class: "bar-label" }, el("i", { class: "dot seg-" + k }), label),
        el("span", { class: "bar" }, (() => { const f = el("span", { class: "fill seg-" + k }); f.style.width = (share * 100).toFixed(2) + "%"; return f; })()),
        el("span", { class: "bar-value" }, dur(v) + (total > 0 && isNum(v) ? " · " + pct(share, 0) : "")));
      box.append(row);
    }
    box.prepend(stack);
    $("#breakdown-note").textContent = win.completed
      ? "Mean per message over " + win.completed + " answered in the last " + bdWindow.replace("m", " min").replace("h", " h") + "; mean SLA duration " + dur(b.sla) + "."
      : "No message answered in this window.";
  }

  // ------------------------------------------------------------ workers

  function renderWorkers(s) {
    const t = s.workers_total;
    $("#workers-total").textContent = t.count + " live · " + t.slots + " slots";
    const body = $("#workers-table tbody");
    body.replaceChildren(...(s.workers.length ? s.workers.map((w) => el("tr", { class: w.stale ? "stale" : "" },
      el("td", { "data-label": "Host" }, w.host, w.stale ? el("span", { class: "badge warn" }, "stale") : null),
      el("td", { "data-label": "PID" }, w.pid),
      el("td", { "data-label": "Slots" }, w.slots),
      el("td", { "data-label": "Utilization" }, pct(w.utilization, 0)),
      el("td", { "data-label": "In flight" }, w.busy),
      el("td", { "data-label": "Processed" }, w.processed + (w.failed ? " (" + w.failed + " failed)" : "")),
      el("td", { "data-label": "Heartbeat" }, w.heartbeat_age_s.toFixed(1) + " s ago")))
      : [el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No live worker."))]));
  }

  // ------------------------------------------------------------ deadlines (docs/priorities.md)

  async function loadDeadlines() {
    let data;
    try { data = await api("api/deadlines"); } catch (e) { return; } // shown by the connection badge
    const sw = data.switches;
    const on = (v) => (v ? "on" : "off");
    $("#deadlines-switches").textContent = "Chatwoot priority " + on(sw.priority_from_chatwoot) +
      " · waiting_since " + on(sw.waiting_since) + " · SLA policies " + on(sw.sla) +
      " · rules " + (sw.rules_file || "none");
    const total = data.sources.reduce((a, r) => a + r.messages, 0);
    $("#deadlines-table tbody").replaceChildren(...(data.sources.length ? data.sources.map((r) => el("tr", {},
      el("td", { "data-label": "Source" }, el("code", {}, r.source)),
      el("td", { "data-label": "Messages" }, r.messages),
      el("td", { "data-label": "Share" }, pct(r.messages / total, 0))))
      : [el("tr", {}, el("td", { colspan: "3", class: "muted" }, "Nothing counted: every deadline switch is off, or no message yet."))]));
  }
  // ------------------------------------------------------------ controls

  function renderControls(s) {
    $("#queue-state").textContent = s.counts.paused ? "paused" : "running";
    $("#queue-state").dataset.level = s.counts.paused ? "warn" : "ok";
    $("#ctl-waiting").textContent = s.counts.waiting + s.counts.delayed;
    $("#ctl-active").textContent = s.counts.active;
    $("#btn-pause").disabled = s.counts.paused;
    $("#btn-resume").disabled = !s.counts.paused;
    $("#profile-state").textContent = s.profile.effective + (s.profile.live ? " (switched live)" : " (configured)");
    $("#btn-legacy").disabled = s.profile.effective === "legacy";
    $("#btn-optimized").disabled = s.profile.effective === "optimized";
    const inC = $("#in-concurrency"), inR = $("#in-rate");
    if (document.activeElement !== inC) inC.placeholder = "configured (" + s.effective.concurrency + ")";
    if (document.activeElement !== inR) inR.placeholder = "configured (" + s.effective.rate_limit + ")";
    $("#limits-effective").textContent = "Live overrides: concurrency " + (s.live_settings.concurrency ?? "none") +
      ", rate " + (s.live_settings.rate_limit ?? "none") + ". Empty clears.";
  }

  async function control(path, body, done) {
    try {
      const r = await api("api/" + path, "POST", body);
      toast(done ? done(r) : "Done");
      return r;
    } catch (e) {
      toast(e.message, true);
      return null;
    }
  }

  $("#btn-pause").addEventListener("click", async () => {
    if (await confirmDialog("Pause the queue?", "Workers finish running jobs and start no new ones until you resume.", "Pause"))
      control("queue/pause", undefined, () => "Queue paused");
  });
  $("#btn-resume").addEventListener("click", () => control("queue/resume", undefined, () => "Queue resumed"));
  $("#btn-drain").addEventListener("click", async () => {
    let preview = await api("api/drain-preview");
    for (;;) {
      const ok = await confirmDialog("Drain the queue?",
        "This permanently removes " + preview.would_remove + " messages (" + preview.waiting + " waiting, " +
        preview.delayed + " delayed for retry). Running jobs are not affected.", "Remove " + preview.would_remove);
      if (!ok) return;
      try {
        const r = await api("api/queue/drain", "POST", { confirm: true, expected: preview.would_remove });
        toast("Removed " + r.removed + " messages");
        return;
      } catch (e) {
        if (e.status !== 409) { toast(e.message, true); return; }
        preview = { would_remove: e.data.would_remove, waiting: e.data.would_remove, delayed: 0 };
      }
    }
  });
  $("#limits-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const num = (v) => (v === "" ? null : Number(v));
    control("settings", { concurrency: num($("#in-concurrency").value), rate_limit: num($("#in-rate").value) },
      () => "Live limits applied (workers pick them up within 2 s)");
  });
  $("#btn-legacy").addEventListener("click", async () => {
    if (await confirmDialog("Roll back to the legacy profile?", "Every worker switches to 3 slots and 10 jobs/s within 2 s.", "Roll back"))
      control("profile", { profile: "legacy" }, () => "Rolled back to legacy");
  });
  $("#btn-optimized").addEventListener("click", async () => {
    if (await confirmDialog("Switch to the optimized profile?", "The live overrides are cleared: workers use their configured concurrency and rate limit.", "Switch"))
      control("profile", { profile: "optimized" }, () => "Optimized profile restored");
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("logout", "POST"); } finally { location.href = "/dashboard/login"; }
  });

  // ------------------------------------------------------------ dead letters

  async function loadDead() {
    const data = await api("api/dead-letters?limit=100");
    $("#dead-total").textContent = data.total + " total";
    const body = $("#dead-table tbody");
    body.replaceChildren(...(data.items.length ? data.items.map((j) => el("tr", { "data-job": j.id },
      el("td", { "data-label": "Job" }, el("a", { href: "#search", onclick: () => showJob(j.id) }, j.id)),
      el("td", { "data-label": "Conversation" }, j.key),
      el("td", { "data-label": "Message" }, j.message_id || "–"),
      el("td", { "data-label": "Attempts" }, j.attempt + " / " + j.max_attempts),
      el("td", { "data-label": "Error", class: "error-cell" }, j.error || "–"),
      el("td", { class: "actions" },
        el("button", { type: "button", class: "small", onclick: () => retryDead(j.id) }, "Retry"),
        el("button", { type: "button", class: "small danger", onclick: () => deleteDead(j.id) }, "Delete"))))
      : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No dead letters."))]));
  }
  // The list is reloaded after a failure too: a row that someone else already retried or
  // deleted goes away instead of failing again.
  async function retryDead(id) {
    await control("dead-letters/" + id + "/retry", undefined, () => "Job " + id + " queued again");
    loadDead();
  }
  async function deleteDead(id) {
    if (!(await confirmDialog("Delete dead letter " + id + "?", "The message is removed for good.", "Delete"))) return;
    await control("dead-letters/" + id + "/delete", undefined, () => "Job " + id + " deleted");
    loadDead();
  }
  $("#dead-refresh").addEventListener("click", loadDead);

  // ------------------------------------------------------------ alerts

  // An alert's card is rebuilt only when what it says changes (state, acknowledgement,
  // silence); each snapshot otherwise only refreshes its value line, so a silence duration
  // being typed, or the focus on a button, survives the 1.5 s updates.
  function alertValue(a) {
    const fmt = (v) => (a.unit === "ms" ? dur(v) : a.unit === "ratio" ? pct(v) : isNum(v) ? v.toFixed(1) + "×" : "–");
    return "value " + fmt(a.value) + " · threshold " + fmt(a.threshold) + (isNum(a.started_at) ? " · since " + clock(a.started_at) : "");
  }

  function alertCard(a, shape, silenced) {
    const minutes = el("input", { type: "number", min: "1", max: "10080", value: "60", class: "minutes", "aria-label": "silence minutes" });
    return el("div", { class: "alert", "data-level": a.severity === "critical" ? "crit" : "warn", "data-fp": a.fingerprint, "data-rule": a.rule, "data-shape": shape },
      el("div", { class: "alert-head" },
        el("strong", {}, a.rule), el("span", { class: "badge " + (a.severity === "critical" ? "crit" : "warn") }, a.severity || "–"),
        el("span", { class: "badge" }, a.status)),
      el("p", {}, a.summary),
      el("p", { class: "muted small alert-value" }, alertValue(a)),
      el("p", { class: "small alert-state" },
        a.acked_by ? "acknowledged by " + a.acked_by : "not acknowledged",
        silenced ? " · silenced until " + clock(a.silenced_until) : ""),
      el("div", { class: "row" },
        el("button", { type: "button", class: "small ack", disabled: !!a.acked_by, onclick: () => control("alerts/" + a.fingerprint + "/ack", undefined, () => "Acknowledgement sent (applied at the next evaluation)") }, "Acknowledge"),
        minutes, el("span", { class: "small muted" }, "min"),
        el("button", { type: "button", class: "small", onclick: () => control("alerts/" + a.fingerprint + "/silence", { minutes: Number(minutes.value) }, () => "Silence sent") }, "Silence")));
  }

  function renderAlerts(s) {
    const box = $("#alerts-active");
    const existing = new Map($$(".alert", box).map((node) => [node.dataset.fp, node]));
    const cards = s.alerts.map((a) => {
      const silenced = isNum(a.silenced_until) && a.silenced_until * 1000 > Date.now();
      const shape = JSON.stringify([a.rule, a.severity, a.status, a.summary, a.acked_by, a.silenced_until, silenced]);
      const card = existing.get(a.fingerprint);
      if (card && card.dataset.shape === shape) {
        $(".alert-value", card).textContent = alertValue(a);
        return card;
      }
      return alertCard(a, shape, silenced);
    });
    const current = Array.from(box.children);
    if (!cards.length) {
      if (!$(".no-alerts", box)) box.replaceChildren(el("p", { class: "muted no-alerts" }, "No alert pending or firing."));
    } else if (cards.length !== current.length || cards.some((c, i) => c !== current[i])) {
      box.replaceChildren(...cards);
    }
    const key = s.alerts.map((a) => a.fingerprint + a.status + (a.acked_by || "") + (a.silenced_until || "")).join("|");
    if (key !== lastHistoryKey) { lastHistoryKey = key; loadAlertTables(); }
  }

  async function loadAlertTables() {
    const data = await api("api/alerts");
    $("#alerts-history tbody").replaceChildren(...data.history.slice(0, 30).map((h) => el("tr", {},
      el("td", {}, clock(h.at)), el("td", {}, h.rule), el("td", {}, h.event), el("td", {}, h.severity || "–"), el("td", {}, h.by || "–"))));
    const fmt = (r, v) => (v === null || v === undefined ? "–" : r.unit === "ms" ? dur(v) : r.unit === "ratio" ? pct(v) : v + "×");
    $("#rules-table tbody").replaceChildren(...data.rules.map((r) => el("tr", {},
      el("td", { title: r.summary }, r.name), el("td", {}, r.direction), el("td", {}, fmt(r, r.warning)),
      el("td", {}, fmt(r, r.critical)), el("td", {}, r.for_s + " s"))));
  }

  // ------------------------------------------------------------ search and timeline

  const VERDICT = { ok: "within SLA", warn: "over the warning threshold", crit: "over the critical threshold" };

  function renderTimeline(job) {
    const box = $("#timeline");
    box.hidden = false;
    const tl = job.timeline;
    const t0 = tl.length ? tl[0].at : 0;
    const span = Math.max(1, tl.length ? tl[tl.length - 1].at - t0 : 1);
    const d = job.durations;
    const v = d.verdict;
    const broker = job.notes && job.notes.broker; // recorded by the reply pipeline
    const source = job.notes && job.notes.deadline; // what set the deadline (docs/priorities.md)
    const queued = job.hops && job.hops.enqueued;
    const due = job.deadline_ms && queued ? " (due " + dur(job.deadline_ms - queued) + " after queued)" : "";
    const head = el("div", { class: "tl-head" },
      el("strong", {}, "Job " + job.id), " · conversation ", el("code", {}, job.key),
      job.message_id ? [" · message ", el("code", {}, job.message_id)] : null,
      " · ", el("span", { class: "badge" }, job.state),
      broker ? [job.state === "completed" ? " · answered by " : " · broker ", el("code", { id: "tl-broker" }, broker)] : null,
      source ? [" · deadline from ", el("code", { id: "tl-deadline" }, source), due] : null,
      el("span", { class: "verdict badge " + (v || "none"), id: "verdict" }, v ? "SLA " + dur(d.sla_ms) + " — " + VERDICT[v] : "no verdict yet"));
    const rows = tl.map((h, i) => {
      const from = i ? tl[i - 1].at : t0;
      const bar = el("span", { class: "wf-bar" + (i ? "" : " first") });
      bar.style.left = (((from - t0) / span) * 100).toFixed(2) + "%";
      bar.style.width = Math.max(0.4, ((h.at - from) / span) * 100).toFixed(2) + "%";
      return el("div", { class: "wf-row" },
        el("span", { class: "wf-hop" }, h.hop),
        el("span", { class: "wf-track" }, bar),
        el("span", { class: "wf-time" }, i ? "+" + dur(h.at - from) : clock(h.at / 1000)));
    });
    const facts = el("p", { class: "small muted" },
      "intake lag " + dur(d.intake_lag_ms) + " · queue wait " + dur(d.queue_wait_ms) + " · processing " + dur(d.processing_ms) +
      " · attempts " + job.attempt + "/" + job.max_attempts + (job.error ? " · last error: " + job.error : ""));
    box.replaceChildren(head, el("div", { class: "waterfall" }, rows), facts);
  }

  async function showJob(id) {
    try { renderTimeline(await api("api/jobs/" + encodeURIComponent(id))); } catch (e) { toast(e.message, true); }
  }

  $("#search-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("#search-q").value.trim();
    if (!q) return;
    const data = await api("api/search?q=" + encodeURIComponent(q));
    const box = $("#search-results");
    if (!data.matches.length) {
      box.replaceChildren(el("p", { class: "muted" }, "Nothing found for “" + q + "”."));
      $("#timeline").hidden = true;
      return;
    }
    const conv = data.conversation;
    box.replaceChildren(...[
      conv ? el("p", { class: "small" }, "Conversation ", el("code", {}, conv.key), ": " + conv.waiting + " waiting" + (conv.running ? ", one running" : "") + "; recent messages:") : null,
      el("ul", { class: "matches" }, data.matches.map((m) => el("li", {},
        el("button", { type: "button", class: "link", onclick: () => renderTimeline(m) }, "job " + m.id),
        " ", m.message_id ? el("code", {}, m.message_id) : null, " ",
        el("span", { class: "badge" }, m.state), " ",
        el("span", { class: "verdict badge " + (m.durations.verdict || "none") }, m.durations.verdict ? dur(m.durations.sla_ms) : "–"),
        el("span", { class: "muted small" }, " matched by " + m.matched_by))))].filter(Boolean));
    renderTimeline(data.matches[0]);
  });

  // ------------------------------------------------------------ charts (uPlot)

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  const darkScheme = window.matchMedia("(prefers-color-scheme: dark)");

  function chartOpts(width, series, scales, axes) {
    const fg = cssVar("--muted"), grid = cssVar("--grid");
    return {
      width, height: 180, series: [{}].concat(series), scales,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      // y axes are 60 px wide: "100 %" and "0.01 s" fit without being clipped.
      axes: [{ stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } }].concat(
        axes.map((a) => Object.assign({ stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 60 }, a))),
    };
  }

  // Points show by themselves where data is sparse (a fresh queue has one or two minutes).
  function sparse(u, si, i0, i1) {
    let n = 0;
    const d = u.data[si];
    for (let i = i0; i <= i1; i++) if (d[i] !== null && d[i] !== undefined) n++;
    return n < 20;
  }
  function line(label, color, extra) {
    return Object.assign({ label, stroke: color, width: 2, spanGaps: false, points: { show: sparse, size: 5 } }, extra);
  }

  const secs = (v) => (!isNum(v) ? "" : (v >= 1 ? +v.toFixed(v < 10 ? 2 : 0) : +v.toPrecision(2)) + " s");
  const fmtS = (u, v) => (v === null || v === undefined ? "–" : secs(v));
  const has = (v) => v !== null && v !== undefined;

  // Steps without data (before the system started) are left out up to a minimum window,
  // so a young system's lines fill the chart instead of hugging its right edge; steps
  // without data after the first one stay as gaps.
  function trimmed(pts, minPoints) {
    const first = pts.findIndex((p) => ["throughput", "p50", "utilization", "depth"].some((k) => has(p[k])));
    const start = first < 0 ? Math.max(0, pts.length - minPoints) : Math.min(first, Math.max(0, pts.length - minPoints));
    return pts.slice(start);
  }

  // The powers of ten from lo to hi: the log scale's ticks and grid lines.
  function decades(lo, hi) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo) + 1e-9); e <= Math.ceil(Math.log10(hi) - 1e-9); e++) out.push(Math.pow(10, e));
    return out;
  }

  function buildCharts(data) {
    const pts = trimmed(data.points, data.span === "1h" ? 10 : 12);
    const xs = pts.map((p) => p.t);
    const col = (k, f) => pts.map((p) => (has(p[k]) ? (f ? f(p[k]) : p[k]) : null));
    const warnS = data.sla_warning_ms / 1000, critS = data.sla_critical_ms / 1000;
    // SLA durations on a log scale: healthy sub-second replies and the 10 s / 30 s
    // thresholds are both readable (on a linear scale up to 30 s, 0.3 s sits on zero).
    const slaCols = [col("p50", (v) => Math.max(v, 1) / 1000), col("p95", (v) => Math.max(v, 1) / 1000), col("p99", (v) => Math.max(v, 1) / 1000)];
    const defs = {
      throughput: {
        data: [xs, col("throughput"), col("arrival")],
        series: [line("answered/s", cssVar("--c1"), { fill: cssVar("--c1a") }), line("arrived/s", cssVar("--c2"), { dash: [4, 3] })],
        scales: { y: { range: (u, mn, mx) => [0, Math.max(1, (mx || 0) * 1.1)] } },
        axes: [{}],
      },
      sla: {
        data: [xs, ...slaCols, xs.map(() => warnS), xs.map(() => critS)],
        series: [line("p50", cssVar("--c1"), { value: fmtS }), line("p95", cssVar("--c2"), { value: fmtS }), line("p99", cssVar("--c3"), { value: fmtS }),
          line(warnS + " s warning", cssVar("--warn"), { dash: [6, 4], width: 1.5, value: fmtS, points: { show: false } }),
          line(critS + " s critical", cssVar("--crit"), { dash: [6, 4], width: 1.5, value: fmtS, points: { show: false } })],
        scales: { y: { distr: 3, log: 10, range: (u, mn, mx) => uPlot.rangeLog(Math.max(0.001, Math.min(isNum(mn) ? mn : warnS, warnS)), Math.max(critS * 1.5, isNum(mx) ? mx : 0), 10, true) } },
        axes: [{ splits: (u, i, mn, mx) => decades(mn, mx), values: (u, vals) => vals.map(secs) }],
      },
      depth: {
        data: [xs, col("depth"), col("oldest_age_ms", (v) => v / 1000)],
        series: [line("queue depth", cssVar("--c1"), { scale: "n", fill: cssVar("--c1a") }), line("oldest age (s)", cssVar("--c3"), { scale: "s", value: fmtS })],
        scales: { n: { range: (u, mn, mx) => [0, Math.max(5, (mx || 0) * 1.1)] }, s: { range: (u, mn, mx) => [0, Math.max(1, (mx || 0) * 1.1)] } },
        axes: [{ scale: "n" }, { scale: "s", side: 1, grid: { show: false }, values: (u, vals) => vals.map((v) => v + " s") }],
      },
      util: {
        data: [xs, col("utilization", (v) => v * 100)],
        series: [line("utilization %", cssVar("--c2"), { fill: cssVar("--c2a") })],
        scales: { y: { range: [0, 100] } },
        axes: [{ values: (u, vals) => vals.map((v) => v + " %") }],
      },
    };
    const scheme = darkScheme.matches ? "dark" : "light";
    for (const [name, def] of Object.entries(defs)) {
      const host = document.getElementById("chart-" + name);
      const width = Math.max(240, host.clientWidth);
      if (charts[name] && charts[name].series.length === def.series.length + 1 && charts[name].span === data.span) {
        charts[name].setData(def.data);
      } else {
        if (charts[name]) charts[name].destroy();
        charts[name] = new uPlot(chartOpts(width, def.series, def.scales, def.axes), def.data, host);
        charts[name].span = data.span;
      }
      host.dataset.scheme = scheme; // drawn in this scheme's colours (the browser test waits on it)
    }
  }

  async function loadSeries() {
    try { buildCharts(await api("api/series?span=" + span)); } catch (e) { /* shown by the connection badge */ }
  }

  function resizeCharts() {
    for (const [name, c] of Object.entries(charts)) {
      const host = document.getElementById("chart-" + name);
      c.setSize({ width: Math.max(240, host.clientWidth), height: 180 });
    }
  }
  new ResizeObserver(() => resizeCharts()).observe($("#charts"));
  darkScheme.addEventListener("change", () => {
    for (const k of Object.keys(charts)) { charts[k].destroy(); delete charts[k]; }
    loadSeries();
  });

  $$("[data-span]").forEach((b) => b.addEventListener("click", () => {
    span = b.dataset.span;
    $$("[data-span]").forEach((x) => x.classList.toggle("on", x === b));
    $("#span-label").textContent = span === "1h" ? "hour" : "24 hours";
    loadSeries();
  }));
  $$("[data-window]").forEach((b) => b.addEventListener("click", () => {
    bdWindow = b.dataset.window;
    $$("[data-window]").forEach((x) => x.classList.toggle("on", x === b));
    if (last) renderBreakdown(last);
  }));

  // ------------------------------------------------------------ live stream

  function render(s) {
    last = s;
    $("#queue-name").textContent = "· " + s.queue;
    $("#updated").textContent = "updated " + clock(s.generated_at);
    document.body.dataset.paused = s.counts.paused ? "1" : "0";
    renderTiles(s);
    renderBreakdown(s);
    renderWorkers(s);
    renderControls(s);
    renderAlerts(s);
    if (lastDead !== s.counts.dead) { lastDead = s.counts.dead; loadDead(); }
  }

  function connect() {
    const conn = $("#conn");
    const es = new EventSource("/dashboard/events");
    es.addEventListener("snapshot", (e) => {
      conn.dataset.state = "live";
      conn.textContent = "live";
      render(JSON.parse(e.data));
    });
    es.addEventListener("logout", () => { es.close(); location.href = "/dashboard/login"; });
    es.addEventListener("error", async () => {
      conn.dataset.state = "down";
      conn.textContent = "reconnecting…";
      if (es.readyState === EventSource.CLOSED) {
        try { await api("api/summary"); setTimeout(connect, 2000); } catch (e) { setTimeout(connect, 5000); }
      }
    });
  }

  // The helpers the dashboard's other scripts (breakers.js) build on.
  window.SluiceDashboard = { el, api, toast, confirmDialog, dur, ago };

  connect();
  loadSeries();
  setInterval(loadSeries, 15000);
  loadDeadlines();
  setInterval(loadDeadlines, 10000);
})();
