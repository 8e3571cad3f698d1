// emoq review queue: plain browser JavaScript, no build step, no framework.
// Libraries (vendored, see static/vendor/README.md): wavesurfer.js for the
// waveform and player, uPlot for the emotion timeline. Helpers: common.js.
// Everything from the API is put on the page with textContent (never as HTML).
"use strict";

(() => {
  const { LABELS, el, isNum, num, pct, seconds, words, timeEl, ApiError } = window.Emoq;
  const HELD_STORE = "emoq.review.heldItem"; // the id of the item this tab holds, to survive a reload
  const FILTER_STORE = "emoq.review.filters";
  const PAGE = 50;
  const REASONS = [
    "fear_disgust_ambiguous", "dual_emotion", "low_confidence", "low_snr", "too_short",
    "calibration_missing", "no_speech", "clipping",
  ];
  const PAIR = ["fearful", "disgusted"];
  const LEAD_IN = 2; // seconds played before the segment when the whole call or the other channel starts
  // When to use which label (shown beside the form).
  const DEFINITIONS = {
    angry: "Irritation to rage: raised or clipped voice, hostility, complaints said with heat.",
    disgusted: "Revulsion or contempt at something: “ugh”, retching, disdainful scorn. Not plain annoyance.",
    fearful: "Fear or anxiety: trembling or tight voice, panic, worried pleading. Not disgust at a threat.",
    happy: "Pleasure, amusement, relief: laughter, warm thanks.",
    neutral: "Calm, matter-of-fact speech with no clear emotion.",
    other: "A clear emotion that is none of these (confused, bored, embarrassed…). You can tell it, but no label fits.",
    sad: "Sorrow, disappointment, resignation; crying.",
    surprised: "Sudden astonishment, pleasant or not: “oh!”, a gasp.",
    unknown: "You cannot tell: no speech, noise, too short, unintelligible. Use this rather than guess.",
  };
  const COLORS = {
    angry: "#c0392b", disgusted: "#2e7d32", fearful: "#6a1b9a", happy: "#f9a825", neutral: "#78909c",
    other: "#8d6e63", sad: "#1565c0", surprised: "#ef6c00", unknown: "#bdbdbd",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), keySection: $("key-section"), keyForm: $("key-form"), keyInput: $("api-key"),
    keyState: $("key-state"), forgetKey: $("forget-key"), workspace: $("workspace"),
    filters: $("filters"), filterReason: $("filter-reason"), filterDomain: $("filter-domain"),
    filterSince: $("filter-since"), filterUntil: $("filter-until"), filterExternal: $("filter-external"),
    filterBatch: $("filter-batch"),
    waiting: $("waiting"), reasonCounts: $("reason-counts"),
    queueSection: $("queue-section"), queue: $("queue"), queueCount: $("queue-count"), queueEmpty: $("queue-empty"),
    queueHeading: $("queue-heading"), loadMore: $("load-more"), claimNext: $("claim-next"), refresh: $("refresh"),
    itemSection: $("item-section"), itemHeading: $("item-heading"), lease: $("lease"),
    randomWeights: $("random-weights"), facts: $("item-facts"), reasons: $("item-reasons"),
    reasonDetails: $("reason-details"), audio: $("segment-audio"), audioNote: $("audio-note"),
    audioMode: $("audio-mode"), playTime: $("play-time"), waveform: $("waveform"),
    playPause: $("play-pause"), playSegment: $("play-segment"), playFocus: $("play-focus"), playCall: $("play-call"),
    playOther: $("play-other"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), focusWhere: $("focus-where"),
    chart: $("timeline-chart"), chartNote: $("chart-note"),
    modelScores: $("model-scores"), enhancedWrap: $("enhanced-wrap"), enhancedScores: $("enhanced-scores"),
    resolveForm: $("resolve-form"), labels: $("labels"), second: $("second-label"), note: $("note"),
    nextWithin: $("next-within"),
    resolve: $("resolve"), release: $("release"), doubleNote: $("double-note"), definitions: $("definition-list"),
    resolveText: $("resolve-text"), releaseText: $("release-text"), reopen: $("reopen"), views: $("views"),
    queueTitle: $("queue-title"), adminPanel: $("admin-panel"), decisionList: $("decision-list"),
    history: $("history"), historyList: $("history-list"),
  };

  const status = window.Emoq.status(ui.status);
  const { send, api } = window.Emoq.client(askForKey);
  const showStatus = status.show;
  const clearStatus = status.clear;
  const styleNonce = document.querySelector('meta[name="emoq-style-nonce"]').content;

  // held: the item on screen; admin: it is open for an admin's decision (no lease), not claimed.
  const state = {
    queue: [], cursor: null, held: null, admin: false, leaseTimer: null, busy: false, filters: {},
    view: "pending", role: null,
  };
  const VIEW_TITLES = { pending: "Waiting for you", disagreement: "Disagreements", resolved: "Resolved" };
  // The held item's player: one wavesurfer per item; each scope's audio is fetched once.
  const player = {
    ws: null, regions: null, scope: null, clipStart: 0, clips: new Map(), ticket: 0, focus: null,
    played: new Set(), pxPerSec: 0, itemShownAt: 0,
  };
  const chart = { plot: null, line: null };

  // ---------- small helpers ----------

  function segmentText(segment) {
    if (!segment || (!isNum(segment.start) && !isNum(segment.end))) return "whole recording";
    return `${num(segment.start, 2)}–${num(segment.end, 2)} s`;
  }

  const badge = (text, extra = "") => el("li", { className: `badge ${extra}`.trim(), text: words(text) });

  function report(error, prefix = "") {
    if (!(error instanceof ApiError)) {
      console.error(error);
      showStatus(`${prefix}Something went wrong in the page: ${error.message}`, "error");
      return;
    }
    if (error.status === 401 || error.status === 403) return; // the key is asked for again
    showStatus(`${prefix}${error.detail} (${error.code})`, "error");
  }

  const itemPath = (id, rest = "") => `v1/review-items/${encodeURIComponent(id)}${rest}`;

  // ---------- the key ----------

  function askForKey(error) {
    window.Emoq.key.forget();
    stopLeaseTimer();
    resetPlayer();
    ui.workspace.hidden = true;
    ui.keySection.hidden = false;
    ui.forgetKey.hidden = true;
    ui.keyState.textContent = "No API key";
    if (error && error.status === 403) {
      showStatus(`Forbidden: ${error.detail}. The review queue needs a reviewer or admin key; enter another key.`, "error");
    } else if (error) {
      showStatus(`Unauthorized: ${error.detail}. Enter your API key again.`, "error");
    }
    ui.keyInput.value = "";
    ui.keyInput.focus();
  }

  async function useKey(value) {
    window.Emoq.key.set(value);
    ui.keyInput.value = "";
    clearStatus();
    try {
      await refreshQueue(); // the first data call checks the key
    } catch (error) {
      report(error);
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
    }
    if (!window.Emoq.key.get()) return;
    ui.keySection.hidden = true;
    ui.workspace.hidden = false;
    ui.forgetKey.hidden = false;
    ui.keyState.textContent = "Key in use (this tab only)";
    await restoreHeld();
    if (!state.held) ui.claimNext.focus();
  }

  function forgetKey() {
    window.Emoq.key.forget();
    sessionStorage.removeItem(HELD_STORE);
    state.held = null;
    showItem(null);
    askForKey();
    showStatus("The key was removed from this tab.", "info");
  }

  // ---------- filters and the queue ----------

  function readFilters() {
    const f = {
      reason: ui.filterReason.value,
      domain: ui.filterDomain.value.trim(),
      since: ui.filterSince.value,
      until: ui.filterUntil.value,
      external_id: ui.filterExternal.value.trim(),
      batch_id: ui.filterBatch.value.trim(),
    };
    state.filters = Object.fromEntries(Object.entries(f).filter(([, v]) => v));
    sessionStorage.setItem(FILTER_STORE, JSON.stringify(state.filters));
  }

  function restoreFilters() {
    let saved = {};
    try {
      saved = JSON.parse(sessionStorage.getItem(FILTER_STORE) || "{}") || {};
    } catch {
      saved = {};
    }
    ui.filterReason.value = saved.reason || "";
    ui.filterDomain.value = saved.domain || "";
    ui.filterSince.value = saved.since || "";
    ui.filterUntil.value = saved.until || "";
    ui.filterExternal.value = saved.external_id || "";
    ui.filterBatch.value = saved.batch_id || "";
    readFilters();
  }

  const filterParams = (extra = {}) => new URLSearchParams({ ...state.filters, ...extra });

  async function loadQueue(more = false) {
    const params = filterParams({ status: state.view, limit: String(PAGE) });
    if (more && state.cursor) params.set("cursor", state.cursor);
    const page = await api("GET", `v1/review-items?${params}`);
    state.queue = more ? state.queue.concat(page.items) : page.items;
    state.cursor = page.next_cursor;
    renderQueue();
  }

  async function loadCounts() {
    const counts = await api("GET", `v1/review-items/counts?${filterParams()}`);
    state.role = counts.you.role;
    ui.views.hidden = state.role !== "admin"; // disagreements and corrections are an admin's
    ui.waiting.textContent = `${counts.waiting} waiting`;
    ui.reasonCounts.replaceChildren(
      ...Object.entries(counts.reasons).map(([reason, n]) => {
        const chosen = state.filters.reason === reason;
        const button = el("button", {
          type: "button", className: `chip${chosen ? " chosen" : ""}`, "aria-pressed": String(chosen),
          title: chosen ? "Show every reason" : `Only ${words(reason)}`, text: `${words(reason)} ${n}`,
        });
        button.addEventListener("click", () => {
          ui.filterReason.value = chosen ? "" : reason;
          applyFilters();
        });
        return el("li", {}, button);
      }),
    );
  }

  // The list and the counts; the counts can lag (they are not needed to go on).
  async function refreshQueue() {
    await loadQueue();
    loadCounts().catch(report);
  }

  function applyFilters(event) {
    if (event) event.preventDefault();
    readFilters();
    return busy(async () => {
      await refreshQueue().catch((error) => {
        // The rows on show answered the old filters: none stay under refused ones.
        state.queue = [];
        state.cursor = null;
        renderQueue();
        report(error);
      });
    });
  }

  function setView(view) {
    state.view = view;
    ui.queueTitle.textContent = VIEW_TITLES[view];
    for (const b of ui.views.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    return busy(async () => loadQueue().catch(report));
  }

  function renderQueue() {
    const items = state.queue;
    ui.queueCount.textContent = `(${items.length}${state.cursor ? "+" : ""})`;
    ui.queueEmpty.hidden = items.length > 0;
    ui.loadMore.hidden = !state.cursor;
    ui.queue.replaceChildren(
      ...items.map((item) => {
        const reasons = el("ul", { className: "badges", "aria-label": "Reasons" }, ...item.reasons.map((r) => badge(r)));
        const segment = item.segment || {};
        const answer = item.final_labels ? ` · final: ${item.final_labels.join(" + ")}` : "";
        const meta = el(
          "p", { className: "meta" },
          `Segment ${segmentText(segment)}`,
          segment.role ? ` · ${segment.role}` : "",
          item.domain ? ` · ${item.domain}` : "",
          item.required_decisions > 1 ? ` · double review (${item.decisions_made}/2)` : "",
          answer,
          " · created ", timeEl(item.created_at),
        );
        const waiting = state.view === "pending";
        const verb = waiting ? "Claim" : "Open";
        const call = item.external_id || "—";
        const claim = el("button", {
          type: "button", className: "secondary small", "data-id": item.id,
          "aria-label": `${verb} the item of call ${call} created ${new Date(item.created_at).toLocaleString()}`,
          text: verb,
        });
        claim.addEventListener("click", () => (waiting ? claimItem(item.id) : openForAdmin(item.id)));
        return el(
          "li", { className: "queue-item", "data-id": item.id },
          el("div", { className: "qi-main" },
            el("span", { className: "call" }, "Call ", el("strong", { text: call })),
            el("span", { className: "model-label" }, "Model: ", el("strong", { text: item.model_label })), reasons),
          meta, claim,
        );
      }),
    );
    updateButtons();
  }

  function updateButtons() {
    const holding = Boolean(state.held);
    ui.claimNext.disabled = holding || state.busy;
    ui.claimNext.title = holding ? "Resolve or release the item you hold first" : "";
    for (const button of ui.queue.querySelectorAll("button")) button.disabled = holding || state.busy;
    ui.resolve.disabled = state.busy;
    ui.release.disabled = state.busy;
  }

  async function busy(fn) {
    if (state.busy) return;
    state.busy = true;
    updateButtons();
    try {
      await fn();
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  // ---------- claiming ----------

  // Where focus goes when no item is held: never <body>.
  function focusQueue() {
    if (!ui.claimNext.disabled) ui.claimNext.focus();
    else ui.queueHeading.focus();
  }

  // done: what was just done, said together with an empty queue.
  async function takeNext(done = "") {
    try {
      const item = await api("POST", `v1/review-items/claim-next?${filterParams()}`);
      hold(item);
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.code === "queue_empty") {
        showStatus(`${done}Nothing more is waiting for you with these filters.`, "info");
        return false;
      }
      report(error, "Could not claim: ");
      return false;
    }
  }

  function claimNext() {
    return busy(async () => {
      if (await takeNext()) showStatus("Claimed the first waiting item.", "success");
      else await refreshQueue().catch(report);
    }).then(() => {
      if (!state.held) focusQueue();
    });
  }

  function claimItem(id) {
    return busy(async () => {
      try {
        hold(await api("POST", itemPath(id, "/claim")));
        showStatus("Claimed.", "success");
      } catch (error) {
        report(error, "Could not claim: ");
        await refreshQueue().catch(report);
      }
    });
  }

  // An admin opens a disagreement (to adjudicate) or a resolved item (to correct or reopen it): no lease.
  function openForAdmin(id) {
    return busy(async () => {
      try {
        const item = await api("GET", itemPath(id));
        state.held = item;
        state.admin = true;
        showItem(item);
        focusLabels();
      } catch (error) {
        report(error, "Could not open: ");
      }
    });
  }

  function hold(item) {
    state.admin = false;
    state.held = item;
    sessionStorage.setItem(HELD_STORE, item.id);
    showItem(item);
    focusLabels();
    // The list is hidden while an item is held (it is reloaded when it shows again); the counts stay in view.
    loadCounts().catch(report);
  }

  // After a reload: the item this tab held, if it still holds it. A new tab also
  // picks up an item this key still holds (a tab closed right after Enter claimed
  // the next one), rather than leave it stranded until its lease runs out.
  async function restoreHeld() {
    if (state.held) return;
    let id = sessionStorage.getItem(HELD_STORE);
    try {
      if (!id) {
        const claimed = await api("GET", "v1/review-items?status=claimed&limit=50");
        const mine = claimed && claimed.items.find((i) => i.held_by_you);
        if (!mine) return;
        id = mine.id;
      }
      const item = await api("GET", itemPath(id));
      if (item && item.held_by_you) {
        state.held = item;
        showItem(item);
        focusLabels();
        showStatus("You still hold this item.", "info");
        return;
      }
      sessionStorage.removeItem(HELD_STORE);
      showStatus("The item you held is no longer yours (its lease expired or it was decided).", "info");
    } catch (error) {
      sessionStorage.removeItem(HELD_STORE);
      report(error);
    }
  }

  function dropHeld() {
    state.held = null;
    if (!state.admin) sessionStorage.removeItem(HELD_STORE);
    state.admin = false;
    showItem(null);
    focusQueue(); // the focused label just disappeared: focus must not fall to <body>
  }

  // ---------- the held item ----------

  function focusLabels() {
    const checked = ui.labels.querySelector("input:checked");
    (checked || ui.labels.querySelector("input")).focus({ preventScroll: true });
  }

  function showItem(item) {
    stopLeaseTimer();
    resetPlayer();
    ui.workspace.classList.toggle("holding", Boolean(item));
    if (!item) {
      ui.itemSection.hidden = true;
      ui.queueSection.hidden = false;
      updateButtons();
      return;
    }
    ui.queueSection.hidden = true;
    ui.itemSection.hidden = false;
    ui.itemSection.dataset.id = item.id;
    window.scrollTo(0, 0); // the item starts at the top, its form beside it
    const evidence = item.evidence || {};
    const call = evidence.call || {};
    const segment = item.segment || {};
    const jobSegment = evidence.segment || {};

    const model = evidence.model || {};
    ui.randomWeights.hidden = !model.random_weights;
    ui.randomWeights.replaceChildren();
    if (model.random_weights) {
      ui.randomWeights.append(
        el("strong", { text: "Random model weights. " }),
        `The model (${model.id || "unknown"}${model.revision ? ` @ ${model.revision}` : ""}) that scored this job ` +
          "had random weights: its label and scores carry no information. Judge from the recording alone.",
      );
    }
    ui.itemHeading.textContent = `Model says ${item.model_label}`;
    const channel = isNum(jobSegment.channel) ? ` (channel ${jobSegment.channel})` : "";
    const facts = [
      ["Call", call.external_id || "—"],
      ["Batch", call.batch_name || call.batch_id || "—"],
      ["Domain", item.domain || call.domain || "—"],
      ["Segment", `${segmentText(segment)}${isNum(segment.index) ? ` (#${segment.index})` : ""}`],
      ["Speaker", `${segment.role || "—"}${channel}`],
      ["Call length", seconds(call.duration_seconds)],
      ["Job", el("code", { text: item.job_id })],
      ["Item", el("code", { text: item.id })],
      ["Created", timeEl(item.created_at)],
    ];
    ui.facts.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
    ui.reasons.replaceChildren(...item.reasons.map((r) => badge(r)));
    ui.doubleNote.hidden = item.required_decisions < 2;

    renderReasonDetails(item, jobSegment);
    renderBars(ui.modelScores, item.model_scores, item.model_label);
    const enhanced = item.reason_details && item.reason_details.enhanced_scores;
    ui.enhancedWrap.hidden = !enhancementChanged(item.model_scores, enhanced);
    if (!ui.enhancedWrap.hidden) renderBars(ui.enhancedScores, enhanced, item.model_label);

    for (const input of ui.labels.querySelectorAll("input")) input.checked = false;
    ui.second.value = "";
    ui.note.value = "";
    const within = Object.entries(state.filters).map(([k, v]) => `${words(k)} ${words(v)}`).join(", ");
    ui.nextWithin.textContent = state.admin ? "" : `Next item: ${within || "any in the queue"}.`;
    showDecisionControls(item);
    ui.history.open = false;
    ui.historyList.replaceChildren();
    updateButtons();
    player.itemShownAt = performance.now();
    drawChart(item, jobSegment.timeline);
    openPlayer(item);
  }

  // A reviewer resolves and releases; an admin adjudicates or corrects, reopens, closes.
  function showDecisionControls(item) {
    ui.adminPanel.hidden = !state.admin;
    ui.reopen.hidden = !state.admin;
    if (!state.admin) {
      ui.resolveText.textContent = "Resolve & next";
      ui.releaseText.textContent = "Release";
      startLeaseTimer(item);
      return;
    }
    const disputed = item.status === "disagreement";
    ui.resolveText.textContent = disputed ? "Adjudicate" : "Correct";
    ui.releaseText.textContent = "Close";
    ui.lease.dataset.kind = "";
    ui.lease.textContent = disputed
      ? "The two reviewers disagree: your label is final."
      : `Status: ${item.status}${item.final_labels ? ` · final: ${item.final_labels.join(" + ")}` : ""}`;
    ui.decisionList.replaceChildren(
      ...(item.decisions || []).map((d) =>
        el("li", {},
          el("strong", { text: d.labels.join(" + ") }),
          ` · ${d.kind} by ${d.reviewer.name} (round ${d.round}) · `, timeEl(d.decided_at),
          d.note ? ` · “${d.note}”` : ""),
      ),
    );
  }

  const EVENT_TEXT = {
    claimed: "claimed", released: "released", lease_expired: "lease expired", decided: "decided",
    adjudicated: "adjudicated", corrected: "corrected", resolved: "resolved", disagreement: "reviewers disagree",
    reopened: "reopened", audio_played: "played audio",
  };

  async function loadHistory() {
    const item = state.held;
    if (!item || !ui.history.open) return;
    try {
      const history = await api("GET", itemPath(item.id, "/history"));
      if (state.held !== item) return;
      ui.historyList.replaceChildren(
        ...history.events.map((e) => {
          const d = e.details || {};
          const extra = [
            d.labels ? d.labels.join(" + ") : "",
            d.previous ? `was ${d.previous.join(" + ")}` : "",
            d.scope ? d.scope : "",
            d.note ? `“${d.note}”` : "",
          ].filter(Boolean);
          return el("li", { "data-kind": e.kind },
            timeEl(e.at), ` · ${EVENT_TEXT[e.kind] || e.kind}`, e.actor ? ` · ${e.actor.name}` : "",
            extra.length ? ` · ${extra.join(" · ")}` : "");
        }),
      );
    } catch (error) {
      report(error, "Could not load the history: ");
    }
  }

  // "After enhancement" only when it moved a score.
  function enhancementChanged(model, enhanced) {
    if (!enhanced || !model) return false;
    return Object.entries(enhanced).some(([k, v]) => isNum(v) && isNum(model[k]) && Math.abs(v - model[k]) > 5e-4);
  }

  function renderBars(list, scores, highlight) {
    const entries = Object.entries(scores || {}).filter(([, v]) => isNum(v));
    entries.sort((a, b) => b[1] - a[1]);
    list.replaceChildren(
      ...entries.map(([label, value]) => {
        const fill = el("span", { className: "bar-fill" });
        fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`; // CSSOM, allowed by the CSP
        return el(
          "li", { className: label === highlight ? "bar top" : "bar" },
          el("span", { className: "bar-label", text: label }),
          el("span", { className: "bar-track", "aria-hidden": "true" }, fill),
          el("span", { className: "bar-value", text: pct(value) }),
        );
      }),
    );
  }

  // A fear/disgust item: the reason says so, or fear or disgust is what the model heard.
  function aboutFearOrDisgust(item, enhancement) {
    const dual = enhancement.dual_emotion;
    return (
      item.reasons.includes("fear_disgust_ambiguous") ||
      PAIR.includes(item.model_label) ||
      Boolean(dual && Array.isArray(dual.labels) && dual.labels.some((l) => PAIR.includes(l)))
    );
  }

  function renderReasonDetails(item, jobSegment) {
    const details = item.reason_details || {};
    const enhancement = details.enhancement || jobSegment.enhancement || {};
    const rows = [];
    const fd = aboutFearOrDisgust(item, enhancement) ? enhancement.fear_disgust : null;
    const fw = fd && fd.focus_window;
    player.focus = fw && isNum(fw.start) && isNum(fw.end) && fw.end > fw.start ? { start: fw.start, end: fw.end } : null;
    if (fd) {
      rows.push(["Fear/disgust margin (model)", num(fd.margin_before)]);
      if (isNum(fd.margin_after)) rows.push(["Fear/disgust margin (after enhancement)", num(fd.margin_after)]);
      if (fd.model) rows.push(["Model fearful / disgusted", `${num(fd.model.fearful)} / ${num(fd.model.disgusted)}`]);
      if (fd.redecision) rows.push(["Re-decision", fd.redecision]);
      if (fd.similarity) {
        rows.push(["Similarity to centroids (fearful / disgusted)", `${num(fd.similarity.fearful)} / ${num(fd.similarity.disgusted)}`]);
      }
      if (fd.similarity_probability) {
        const p = fd.similarity_probability;
        rows.push(["Similarity probability (fearful / disgusted)", `${num(p.fearful)} / ${num(p.disgusted)}`]);
      }
      if (isNum(fd.temperature)) rows.push(["Centroid temperature", num(fd.temperature)]);
      if (fd.calibration_version !== undefined && fd.calibration_version !== null) {
        rows.push(["Calibration version", String(fd.calibration_version)]);
      }
      if (typeof fd.changed_decision === "boolean") rows.push(["Enhancement changed the label", fd.changed_decision ? "yes" : "no"]);
      if (fw && typeof fw === "object") {
        const offset = isNum(item.segment && item.segment.start) ? item.segment.start : null;
        let where = `${num(fw.start, 2)}–${num(fw.end, 2)} s into the segment`;
        if (offset !== null && isNum(fw.start) && isNum(fw.end)) {
          where += ` (${num(offset + fw.start, 2)}–${num(offset + fw.end, 2)} s in the recording)`;
        }
        rows.push(["Focus window", where]);
        if (fw.window_scores) {
          rows.push(["Focus window fearful / disgusted", `${num(fw.window_scores.fearful)} / ${num(fw.window_scores.disgusted)}`]);
        }
        if (fw.crop_scores) {
          rows.push(["Focus crop fearful / disgusted", `${num(fw.crop_scores.fearful)} / ${num(fw.crop_scores.disgusted)}`]);
        }
        if (isNum(fw.crop_fear_share)) rows.push(["Focus crop fear share", num(fw.crop_fear_share)]);
      }
    }
    const dual = enhancement.dual_emotion;
    if (dual && Array.isArray(dual.labels)) {
      rows.push(["Dual emotion", dual.labels.map((l, i) => `${l} ${pct((dual.scores || [])[i])}`).join(" vs ")]);
    }
    const profile = enhancement.domain_profile;
    if (profile && typeof profile === "object" && profile.domain) {
      rows.push([
        "Domain profile",
        profile.applied ? `${profile.domain} v${profile.version}` : `${profile.domain}: ${profile.why || "not applied"}`,
      ]);
    }
    const quality = details.quality || jobSegment.quality;
    if (quality && typeof quality === "object") {
      const q = [];
      if (isNum(quality.speech_ratio)) q.push(`speech ${pct(quality.speech_ratio)}`);
      if (isNum(quality.snr_db)) q.push(`SNR ${quality.snr_db.toFixed(1)} dB`);
      if (isNum(quality.clipping_ratio) && quality.clipping_ratio > 0) q.push(`clipping ${pct(quality.clipping_ratio)}`);
      if (Array.isArray(quality.flags) && quality.flags.length) q.push(quality.flags.map(words).join(", "));
      if (q.length) rows.push(["Audio quality", q.join(" · ")]);
    }
    if (Array.isArray(details.flags)) {
      const others = details.flags.filter((f) => !item.reasons.includes(f));
      if (others.length) rows.push(["Other flags", others.map(words).join(", ")]);
    }
    if (!rows.length) {
      ui.reasonDetails.replaceChildren(el("p", { className: "hint", text: "No further details were recorded." }));
      return;
    }
    ui.reasonDetails.replaceChildren(
      el("dl", { className: "facts details" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    );
  }

  // ---------- the emotion timeline (uPlot) ----------

  function destroyChart() {
    if (chart.plot) chart.plot.destroy();
    chart.plot = null;
    chart.line = null;
    ui.chart.replaceChildren();
  }

  function drawChart(item, timeline) {
    destroyChart();
    const ok = timeline && Array.isArray(timeline.starts) && timeline.starts.length && Array.isArray(timeline.scores);
    ui.chart.hidden = !ok;
    if (!ok) {
      ui.chartNote.textContent = "No timeline for this segment: its job was analysed without granularity=frame.";
      return;
    }
    ui.chartNote.textContent = "Each line is one emotion's score over time (fearful and disgusted thick). Click to play from there.";
    const labels = Array.isArray(timeline.labels) && timeline.labels.length === LABELS.length ? timeline.labels : LABELS;
    const half = isNum(timeline.window_seconds) ? timeline.window_seconds / 2 : 0;
    const xs = timeline.starts.map((s) => s + half); // each window at its middle, in recording seconds
    const data = [xs, ...labels.map((_, i) => timeline.scores.map((row) => row[i]))];
    const series = [
      { label: "time (s)", value: (u, v) => (v == null ? "—" : `${v.toFixed(2)} s`) },
      ...labels.map((label) => ({
        label,
        stroke: COLORS[label] || "#555",
        width: PAIR.includes(label) ? 3 : 1,
        alpha: PAIR.includes(label) ? 1 : 0.75,
        value: (u, v) => (v == null ? "—" : v.toFixed(2)),
      })),
    ];
    const width = Math.max(300, ui.chart.clientWidth || 600);
    chart.plot = new uPlot(
      {
        width,
        height: 170,
        scales: { x: { time: false }, y: { range: [0, 1] } },
        axes: [{ label: "seconds in the recording", size: 40 }, { label: "score", size: 50 }],
        series,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
      },
      data,
      ui.chart,
    );
    chart.line = el("div", { className: "chart-playhead", "aria-hidden": "true" });
    chart.line.hidden = true;
    chart.plot.over.append(chart.line);
    chart.plot.over.addEventListener("click", (event) => {
      const t = chart.plot.posToVal(event.offsetX, "x");
      if (isNum(t)) seekRecording(t, true);
    });
  }

  function moveChartLine(recordingTime) {
    if (!chart.plot || !chart.line) return;
    const [min, max] = [chart.plot.scales.x.min, chart.plot.scales.x.max];
    const inside = isNum(recordingTime) && recordingTime >= min && recordingTime <= max;
    chart.line.hidden = !inside;
    if (inside) chart.line.style.left = `${chart.plot.valToPos(recordingTime, "x")}px`;
  }

  // ---------- the player (wavesurfer) ----------

  function audioNote(text, kind = "") {
    ui.audioNote.textContent = text;
    if (kind) ui.audioNote.dataset.kind = kind;
    else delete ui.audioNote.dataset.kind;
  }

  const MODE_TEXT = {
    segment: "the segment with 1 s either side",
    call: "the whole call, this speaker's channel",
    other: "the whole call, the other channel",
  };

  function resetPlayer() {
    player.ticket += 1; // a fetch still under way for the previous item is dropped when it lands
    if (player.ws) player.ws.destroy(); // revokes the object URLs it made
    player.ws = player.regions = null;
    ui.audio.pause();
    ui.audio.removeAttribute("src");
    ui.audio.load(); // lets go of the old media
    // A new element for the next item: wavesurfer would otherwise start by fetching the old (revoked) source.
    const fresh = el("audio", { id: "segment-audio", preload: "auto", "aria-label": "Segment audio" });
    ui.audio.replaceWith(fresh);
    ui.audio = fresh;
    player.clips.clear();
    player.played.clear();
    player.scope = null;
    player.clipStart = 0;
    player.pxPerSec = 0;
    ui.waveform.replaceChildren();
    ui.audioMode.textContent = "";
    ui.playTime.textContent = "—";
    ui.focusWhere.textContent = "";
    audioNote("");
    destroyChart();
    updatePlayerButtons();
  }

  function updatePlayerButtons() {
    const ready = Boolean(player.ws && player.scope);
    const playing = Boolean(player.ws && player.ws.isPlaying());
    ui.playPause.firstChild.textContent = playing ? "Pause " : "Play ";
    ui.playPause.disabled = !ready;
    ui.playFocus.hidden = !player.focus;
    ui.playFocus.disabled = !player.focus || !ready;
    for (const b of [ui.zoomIn, ui.zoomOut]) b.disabled = !ready;
    const channels = state.held && state.held.evidence && state.held.evidence.call ? state.held.evidence.call.channels : null;
    ui.playOther.disabled = channels === 1;
    ui.playOther.title = channels === 1 ? "A one-channel recording has no other channel" : "";
  }

  function openPlayer(item) {
    player.ws = WaveSurfer.create({
      container: ui.waveform,
      media: ui.audio,
      height: 80,
      waveColor: "#9fb3d1",
      progressColor: "#1f5fbf",
      cursorColor: "#d13b00",
      cursorWidth: 2,
      normalize: true,
      dragToSeek: true,
      cspNonce: styleNonce,
      plugins: [],
    });
    player.regions = player.ws.registerPlugin(WaveSurfer.Regions.create());
    player.ws.registerPlugin(WaveSurfer.Zoom.create({ scale: 0.25, maxZoom: 2000 }));
    player.ws.on("timeupdate", (t) => showTime(t));
    player.ws.on("play", updatePlayerButtons);
    player.ws.on("pause", updatePlayerButtons);
    player.ws.on("finish", updatePlayerButtons);
    player.ws.on("zoom", (px) => {
      player.pxPerSec = px;
    });
    if (player.focus) {
      const at = item.segment.start;
      ui.focusWhere.textContent = `${num(at + player.focus.start, 2)}–${num(at + player.focus.end, 2)} s in the recording`;
    }
    updatePlayerButtons();
    loadScope(item, "segment")
      .then((ok) => {
        if (ok) performance.measure("emoq:waveform-ready", { start: player.itemShownAt });
      })
      .catch(() => {});
  }

  // Fetch a scope's audio once per item, show it in the waveform with the segment and the focus window.
  async function loadScope(item, scope) {
    if (player.scope === scope) return true;
    const ticket = player.ticket;
    let clip = player.clips.get(scope);
    ui.waveform.setAttribute("aria-busy", "true");
    audioNote("Loading the audio…");
    try {
      if (!clip) {
        const response = await send("GET", itemPath(item.id, `/audio?scope=${scope}`), undefined, "audio/wav, application/problem+json");
        const blob = await response.blob();
        if (ticket !== player.ticket) return false; // moved on meanwhile
        const start = Number.parseFloat(response.headers.get("X-Emoq-Segment-Start"));
        clip = { blob, start: Number.isFinite(start) ? start : 0, channel: response.headers.get("X-Emoq-Channel") };
        player.clips.set(scope, clip);
      }
      player.clipStart = clip.start;
      await player.ws.loadBlob(clip.blob);
      if (ticket !== player.ticket) return false;
      player.scope = scope;
      player.pxPerSec = 0;
      showRegions(item);
      ui.audioMode.textContent = `· ${MODE_TEXT[scope]}${clip.channel !== null ? ` (channel ${clip.channel})` : ""}`;
      const into = item.segment.start - clip.start;
      audioNote(
        `This clip starts at ${seconds(clip.start)} in the recording; the segment runs from ` +
          `${seconds(into)} to ${seconds(into + (item.segment.end - item.segment.start))} of it.`,
      );
      showTime(0);
      return true;
    } catch (error) {
      if (ticket !== player.ticket) return false;
      if (error instanceof ApiError) {
        if (error.status === 401 || error.status === 403) return false;
        const what = error.code === "recording_missing" ? "The recording is no longer in storage" : "No audio";
        audioNote(`${what}: ${error.detail} (${error.code})`, "error");
      } else {
        console.error(error);
        audioNote(`No audio: ${error.message}`, "error");
      }
      return false;
    } finally {
      if (ticket === player.ticket) {
        ui.waveform.removeAttribute("aria-busy");
        updatePlayerButtons();
      }
    }
  }

  function showRegions(item) {
    player.regions.clearRegions();
    const offset = player.clipStart;
    player.regions.addRegion({
      id: "segment", start: item.segment.start - offset, end: item.segment.end - offset,
      color: "rgba(31, 95, 191, 0.14)", drag: false, resize: false,
    });
    if (player.focus) {
      player.regions.addRegion({
        id: "focus", start: item.segment.start + player.focus.start - offset,
        end: item.segment.start + player.focus.end - offset,
        color: "rgba(255, 176, 0, 0.40)", drag: false, resize: false,
      });
    }
  }

  function showTime(clipTime) {
    const t = player.clipStart + (isNum(clipTime) ? clipTime : 0);
    ui.playTime.textContent = `${t.toFixed(2)} s`;
    ui.playTime.dataset.seconds = t.toFixed(3);
    moveChartLine(t);
  }

  // Go to a second of the recording (from the chart); play from there when asked.
  function seekRecording(t, play) {
    if (!player.ws || !player.scope) return;
    const duration = player.ws.getDuration();
    const clipTime = Math.min(Math.max(0, t - player.clipStart), duration || 0);
    player.ws.setTime(clipTime);
    showTime(clipTime);
    if (play) {
      recordPlayed(player.scope);
      player.ws.play();
    }
  }

  function recordPlayed(scope) {
    const item = state.held;
    if (!item || !scope || player.played.has(scope)) return;
    player.played.add(scope);
    api("POST", itemPath(item.id, "/played"), { scope }).catch(() => {}); // history only: never in the way
  }

  async function playScope(scope, from, to, label = scope) {
    const item = state.held;
    if (!item || !player.ws) return;
    if (!(await loadScope(item, scope)) || state.held !== item) return;
    recordPlayed(label);
    player.ws.play(from(), to ? to() : undefined).catch((error) => {
      if (error.name !== "AbortError") audioNote(`Could not play: ${error.message}`, "error");
    });
  }

  const segmentOffset = () => state.held.segment.start - player.clipStart;

  function togglePlay() {
    if (!player.ws) return;
    if (!player.scope) {
      playSegment();
      return;
    }
    if (!player.ws.isPlaying()) recordPlayed(player.scope);
    player.ws.playPause();
  }

  const playSegment = () => playScope("segment", () => 0);
  const playCall = (scope = "call") => playScope(scope, () => Math.max(0, segmentOffset() - LEAD_IN));

  function playFocus() {
    if (!player.focus) return;
    const scope = player.scope || "segment";
    playScope(scope, () => segmentOffset() + player.focus.start, () => segmentOffset() + player.focus.end, "focus");
  }

  function zoom(factor) {
    if (!player.ws || !player.scope) return;
    const duration = player.ws.getDuration();
    const fit = duration ? ui.waveform.clientWidth / duration : 50;
    const next = Math.min(2000, Math.max(fit, (player.pxPerSec || fit) * factor));
    player.ws.zoom(next <= fit ? 0 : next);
  }

  // ---------- the lease ----------

  function stopLeaseTimer() {
    if (state.leaseTimer) clearInterval(state.leaseTimer);
    state.leaseTimer = null;
  }

  function startLeaseTimer(item) {
    const tick = () => {
      if (!item.lease_expires_at) {
        ui.lease.textContent = "";
        return;
      }
      const left = Math.round((new Date(item.lease_expires_at) - Date.now()) / 1000);
      ui.lease.replaceChildren();
      if (left > 0) {
        const mm = Math.floor(left / 60);
        const ss = String(left % 60).padStart(2, "0");
        ui.lease.append("Lease expires at ", timeEl(item.lease_expires_at, false), ` (${mm}:${ss} left)`);
        ui.lease.dataset.kind = left <= 60 ? "warning" : "";
      } else {
        ui.lease.append(
          "Lease expired at ", timeEl(item.lease_expires_at, false),
          ". Another reviewer may take this item; resolving will fail unless you claim it again.",
        );
        ui.lease.dataset.kind = "expired";
        stopLeaseTimer();
      }
    };
    tick();
    state.leaseTimer = setInterval(tick, 1000);
  }

  // ---------- resolve / release ----------

  function chosenLabels() {
    const first = ui.labels.querySelector("input:checked");
    if (!first) return null;
    const second = ui.second.value;
    return second && second !== first.value ? [first.value, second] : [first.value];
  }

  // Resolve, then claim the next item within the filters: the keyboard loop.
  function resolve(event) {
    if (event) event.preventDefault();
    const item = state.held;
    if (!item || state.busy) return;
    const labels = chosenLabels();
    if (!labels) {
      showStatus("Pick a label first (keys 1–9).", "error");
      focusLabels();
      return;
    }
    const note = ui.note.value.trim();
    if (state.admin) return decideAsAdmin(item, labels, note);
    performance.mark("emoq:resolve");
    let message = "";
    return busy(async () => {
      try {
        const done = await api("POST", itemPath(item.id, "/resolve"), { labels, note: note || null });
        dropHeld();
        const what = {
          resolved: "Resolved",
          disagreement: "Sent to an admin (the two reviewers disagree)",
        }[done.status] || "Recorded (a second reviewer decides too)";
        message = `${what}: “${labels.join(" + ")}”. `;
        showStatus(message, "success");
      } catch (error) {
        report(error, "Could not resolve: ");
        // The item is no longer this reviewer's (lease gone, decided elsewhere): back to the queue, which
        // says what happened, rather than straight into another item.
        if (error instanceof ApiError && ["not_claimed", "already_resolved", "awaiting_adjudication"].includes(error.code)) {
          dropHeld();
          await refreshQueue().catch(report);
        }
        return;
      }
      if (await takeNext(message)) performance.measure("emoq:next-item", "emoq:resolve");
      else await refreshQueue().catch(report);
    }).then(() => {
      if (!state.held) focusQueue();
    });
  }

  function decideAsAdmin(item, labels, note) {
    const action = item.status === "disagreement" ? "adjudicate" : "correct";
    return busy(async () => {
      try {
        await api("POST", itemPath(item.id, `/${action}`), { labels, note: note || null });
        dropHeld();
        showStatus(`${action === "adjudicate" ? "Adjudicated" : "Corrected"}: “${labels.join(" + ")}”.`, "success");
        await loadQueue().catch(report);
      } catch (error) {
        report(error, `Could not ${action}: `);
      }
    }).then(() => {
      if (!state.held) focusQueue();
    });
  }

  function reopen() {
    const item = state.held;
    if (!item || !state.admin) return;
    return busy(async () => {
      try {
        await api("POST", itemPath(item.id, "/reopen"), { note: ui.note.value.trim() || null });
        dropHeld();
        showStatus("Reopened: the item waits for a new round of reviews.", "success");
        await refreshQueue().catch(report);
      } catch (error) {
        report(error, "Could not reopen: ");
      }
    }).then(() => {
      if (!state.held) focusQueue();
    });
  }

  function release() {
    const item = state.held;
    if (!item) return;
    if (state.admin) {
      dropHeld(); // an admin's view holds no lease: closing is all
      busy(async () => loadQueue().catch(report)).then(focusQueue);
      return;
    }
    return busy(async () => {
      try {
        await api("POST", itemPath(item.id, "/release"));
        dropHeld();
        showStatus("Released: the item is back in the queue.", "success");
      } catch (error) {
        report(error, "Could not release: ");
        if (error instanceof ApiError && error.code === "not_claimed") dropHeld();
      }
      await refreshQueue().catch(report);
    }).then(() => {
      if (!state.held) focusQueue();
    });
  }

  // ---------- wiring ----------

  function buildLabelPickers() {
    ui.labels.replaceChildren(
      ...LABELS.map((label, i) => {
        const id = `label-${label}`;
        return el(
          "div", { className: "label-option", title: DEFINITIONS[label] },
          el("input", { type: "radio", name: "label", id, value: label, required: true }),
          el("label", { for: id }, el("kbd", { text: String(i + 1) }), ` ${label}`),
        );
      }),
    );
    for (const label of LABELS) ui.second.append(el("option", { value: label, text: label }));
    ui.definitions.replaceChildren(
      ...LABELS.flatMap((label) => [el("dt", { text: label }), el("dd", { text: DEFINITIONS[label] })]),
    );
    for (const reason of REASONS) ui.filterReason.append(el("option", { value: reason, text: words(reason) }));
  }

  // 1–9 (top row or keypad): the label; with Shift: the second label (again: none).
  function digitOf(event) {
    const m = /^(?:Digit|Numpad)([1-9])$/.exec(event.code);
    return m ? Number(m[1]) : null;
  }

  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey || ui.workspace.hidden) return;
    const target = event.target;
    const typing = target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && target.type !== "radio"));
    if (typing) {
      if (event.key === "Escape") target.blur(); // back to the shortcuts
      return;
    }
    const onControl = target && (target.tagName === "BUTTON" || target.tagName === "A" || target.tagName === "SUMMARY");
    if (!state.held) {
      if (event.key === "n" || event.key === "N") {
        event.preventDefault();
        claimNext();
      }
      return;
    }
    const digit = digitOf(event);
    if (digit !== null && digit <= LABELS.length) {
      const label = LABELS[digit - 1];
      if (event.shiftKey) {
        ui.second.value = ui.second.value === label ? "" : label; // again: none
      } else {
        const input = $(`label-${label}`);
        input.checked = true;
        input.focus({ preventScroll: true });
      }
      event.preventDefault();
      return;
    }
    const actions = {
      Enter: () => resolve(),
      " ": togglePlay,
      Escape: release,
      s: playSegment,
      f: playFocus,
      w: () => playCall("call"),
      o: () => playCall("other"),
      "+": () => zoom(2),
      "=": () => zoom(2),
      "-": () => zoom(0.5),
    };
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action || (onControl && (event.key === "Enter" || event.key === " "))) return; // a focused button acts itself
    event.preventDefault();
    action();
  }

  function init() {
    buildLabelPickers();
    restoreFilters();
    ui.keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = ui.keyInput.value.trim();
      if (!value) {
        showStatus("Enter an API key.", "error");
        ui.keyInput.focus();
        return;
      }
      useKey(value);
    });
    ui.forgetKey.addEventListener("click", forgetKey);
    ui.filters.addEventListener("submit", applyFilters);
    ui.claimNext.addEventListener("click", claimNext);
    ui.refresh.addEventListener("click", () => busy(async () => refreshQueue().catch(report)));
    ui.loadMore.addEventListener("click", () => busy(async () => loadQueue(true).catch(report)));
    ui.resolveForm.addEventListener("submit", resolve);
    ui.release.addEventListener("click", release);
    ui.reopen.addEventListener("click", reopen);
    ui.history.addEventListener("toggle", loadHistory);
    for (const b of ui.views.querySelectorAll("button")) b.addEventListener("click", () => setView(b.dataset.view));
    ui.playPause.addEventListener("click", togglePlay);
    ui.playSegment.addEventListener("click", playSegment);
    ui.playFocus.addEventListener("click", playFocus);
    ui.playCall.addEventListener("click", () => playCall("call"));
    ui.playOther.addEventListener("click", () => playCall("other"));
    ui.zoomIn.addEventListener("click", () => zoom(2));
    ui.zoomOut.addEventListener("click", () => zoom(0.5));
    document.addEventListener("keydown", onKey);

    const key = window.Emoq.key.get();
    if (key) useKey(key);
    else ui.keyInput.focus();
  }

  init();
})();
