// emoq review stats: the supervisors' page over GET /v1/review-stats (admin).
"use strict";

(() => {
  const { el, num, pct, words, ApiError } = window.Emoq;
  const $ = (id) => document.getElementById(id);
  const ui = {
    keySection: $("key-section"), keyForm: $("key-form"), keyInput: $("api-key"), keyState: $("key-state"),
    forgetKey: $("forget-key"), stats: $("stats"), range: $("range"), since: $("since"), until: $("until"),
    summary: $("summary"), backlog: $("backlog"), cleared: $("cleared"), agreement: $("agreement"),
    confusion: $("confusion"),
  };
  const status = window.Emoq.status($("status"));
  const { api } = window.Emoq.client(askForKey);

  function askForKey(error) {
    window.Emoq.key.forget();
    ui.stats.hidden = true;
    ui.keySection.hidden = false;
    ui.forgetKey.hidden = true;
    ui.keyState.textContent = "No API key";
    if (error && error.status === 403) status.show(`Forbidden: ${error.detail}. The stats need an admin key.`, "error");
    else if (error) status.show(`Unauthorized: ${error.detail}. Enter your API key again.`, "error");
    ui.keyInput.value = "";
    ui.keyInput.focus();
  }

  function table(node, head, rows, empty) {
    const thead = el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col", text: h }))));
    const body = rows.length
      ? rows.map((cells) => el("tr", {}, ...cells.map((c, i) => el(i ? "td" : "th", i ? {} : { scope: "row" }, c))))
      : [el("tr", {}, el("td", { colspan: String(head.length), className: "empty", text: empty }))];
    node.replaceChildren(thead, el("tbody", {}, ...body));
  }

  const kappa = (v) => (v === null || v === undefined ? "—" : num(v, 2));

  function render(stats) {
    const a = stats.agreement;
    const t = stats.time_to_decision;
    const m = stats.model_vs_human;
    const facts = [
      ["Median time to decision (claim → decision)", t.median_seconds === null ? "—" : `${num(t.median_seconds, 1)} s over ${t.decisions} decisions`],
      ["Double-reviewed pairs", String(a.pairs)],
      ["Raw agreement", a.raw === null ? "—" : pct(a.raw)],
      ["Cohen's kappa", kappa(a.kappa)],
      ["Model agrees with people", m.model_agrees === null ? "—" : `${pct(m.model_agrees)} of ${m.items} resolved items`],
    ];
    ui.summary.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));

    table(
      ui.backlog, ["reason", "waiting", "claimed", "disagreement"],
      Object.entries(stats.backlog).map(([reason, n]) => [words(reason), String(n.waiting), String(n.claimed), String(n.disagreement)]),
      "Nothing is open.",
    );
    table(
      ui.cleared, ["day", "reviewer", "decisions"],
      stats.cleared.map((c) => [c.day, c.reviewer, String(c.decisions)]),
      "No decisions in this period.",
    );
    table(
      ui.agreement, ["label", "named", "specific agreement", "kappa"],
      Object.entries(a.per_label).map(([label, v]) => [label, String(v.named), pct(v.specific_agreement), kappa(v.kappa)]),
      "No item was reviewed twice in this period.",
    );
    const max = Math.max(1, ...m.matrix.flat());
    const rows = m.labels.map((label, i) => [
      label,
      ...m.matrix[i].map((n, j) => {
        const cell = el("span", { className: `cell${i === j ? " diagonal" : ""}`, text: String(n) });
        cell.style.setProperty("--share", String(n / max)); // CSSOM, allowed by the CSP
        return cell;
      }),
    ]);
    table(ui.confusion, ["model ↓ / people →", ...m.labels], rows, "");
  }

  async function load() {
    const params = new URLSearchParams();
    if (ui.since.value) params.set("since", ui.since.value);
    if (ui.until.value) params.set("until", ui.until.value);
    try {
      render(await api("GET", `v1/review-stats?${params}`));
      status.clear();
      return true;
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
      if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) {
        status.show(`Could not load the stats: ${error.detail || error.message}`, "error");
      }
      return false;
    }
  }

  async function useKey(value) {
    window.Emoq.key.set(value);
    ui.keyInput.value = "";
    if (!(await load()) || !window.Emoq.key.get()) return;
    ui.keySection.hidden = true;
    ui.stats.hidden = false;
    ui.forgetKey.hidden = false;
    ui.keyState.textContent = "Key in use (this tab only)";
    $("summary-heading").focus();
  }

  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (ui.keyInput.value.trim()) useKey(ui.keyInput.value.trim());
  });
  ui.range.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  ui.forgetKey.addEventListener("click", () => {
    askForKey();
    status.show("The key was removed from this tab.", "info");
  });
  const key = window.Emoq.key.get();
  if (key) useKey(key);
  else ui.keyInput.focus();
})();
