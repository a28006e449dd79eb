/* Sluice dashboard, accounts panel (tenant fairness, docs/fairness.md): the per-account caps,
 * the busiest accounts' turns in flight and lanes held back at a cap, and the decisions.
 * Its own file so the panel stays apart from app.js; it polls /dashboard/api/fairness. */
(function () {
  "use strict";

  const POLL_MS = 5000;
  const $ = (sel) => document.querySelector(sel);

  function cell(label, value, cls) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (cls) td.className = cls;
    td.textContent = String(value);
    return td;
  }

  function row(a, other) {
    const tr = document.createElement("tr");
    if (other) tr.className = "stale";
    const name = cell("Account", other ? "all others" : a.account);
    if (a.held > 0) {
      const badge = document.createElement("span");
      badge.className = "badge warn";
      badge.textContent = "at cap";
      name.append(badge);
    }
    tr.append(name, cell("In flight", a.active), cell("Held back now", a.held),
      cell("Held back (all time)", a.capped), cell("Lent idle slots", a.lent));
    return tr;
  }

  function render(f) {
    const caps = [];
    if (f.account_concurrency) caps.push(f.account_concurrency + " in flight");
    if (f.account_rate) caps.push(f.account_rate + " starts/s");
    const inbox = [];
    if (f.inbox_concurrency) inbox.push(f.inbox_concurrency + " in flight");
    if (f.inbox_rate) inbox.push(f.inbox_rate + " starts/s");
    const parts = [];
    if (caps.length) parts.push("cap per account: " + caps.join(" · "));
    if (inbox.length) parts.push("per inbox: " + inbox.join(" · "));
    $("#fairness-caps").textContent = f.enabled ? parts.join("; ") : "fairness off";
    const rows = f.accounts.map((a) => row(a, false));
    const o = f.other;
    if (o.active || o.held || o.capped || o.lent) rows.push(row(o, true));
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell("", "No account has work in flight.", "muted");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    $("#fairness-table tbody").replaceChildren(...rows);
    $("#fairness-note").textContent = f.enabled
      ? "So far " + f.capped_concurrency + " lanes held back at the concurrency cap and " + f.capped_rate +
        " at the rate cap; " + f.lent + " idle slots lent to accounts over a cap. An account waits at its cap only while another account's message can take the slot."
      : "Every account in earliest-deadline order. Set SLUICE_ACCOUNT_CONCURRENCY or SLUICE_ACCOUNT_RATE to cap one account's share.";
    // Rows named "<account>/<inbox>" are inboxes held back at an inbox cap.
  }

  let shown = "";  // the data on screen: redrawn only when it changed, so the page below
                  // the panel does not move under a pointer for nothing

  async function poll() {
    try {
      const res = await fetch("/dashboard/api/fairness", { credentials: "same-origin" });
      if (!res.ok) return;
      const text = await res.text();
      if (text === shown) return;
      shown = text;
      render(JSON.parse(text));
    } catch (e) {
      /* the live feed's indicator already says when the API is unreachable */
    }
  }

  poll();
  setInterval(poll, POLL_MS);
})();
