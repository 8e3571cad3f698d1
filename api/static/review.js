// emoq review queue: plain browser JavaScript, no build step, no framework.
// Everything from the API is put on the page with textContent (never as HTML).
"use strict";

(() => {
  const LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"];
  const KEY_STORE = "emoq.review.apiKey"; // sessionStorage only: gone when the tab closes
  const HELD_STORE = "emoq.review.heldItem"; // the id of the item this tab holds, to survive a reload
  const PAGE = 50;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    keySection: $("key-section"),
    keyForm: $("key-form"),
    keyInput: $("api-key"),
    keyState: $("key-state"),
    forgetKey: $("forget-key"),
    workspace: $("workspace"),
    queue: $("queue"),
    queueCount: $("queue-count"),
    queueEmpty: $("queue-empty"),
    loadMore: $("load-more"),
    claimNext: $("claim-next"),
    refresh: $("refresh"),
    itemSection: $("item-section"),
    itemHeading: $("item-heading"),
    lease: $("lease"),
    randomWeights: $("random-weights"),
    facts: $("item-facts"),
    reasons: $("item-reasons"),
    reasonDetails: $("reason-details"),
    audio: $("segment-audio"),
    audioNote: $("audio-note"),
    playFocus: $("play-focus"),
    focusWhere: $("focus-where"),
    modelScores: $("model-scores"),
    enhancedWrap: $("enhanced-wrap"),
    enhancedScores: $("enhanced-scores"),
    resolveForm: $("resolve-form"),
    labels: $("labels"),
    note: $("note"),
    resolve: $("resolve"),
    release: $("release"),
  };

  const state = { queue: [], cursor: null, held: null, leaseTimer: null, busy: false };
  // The claimed item's audio: the object URL playing now, the recording second it starts at,
  // the focus window (relative to the segment start) and, while it plays, where to stop.
  const listen = { url: null, loading: 0, start: null, focus: null, stopAt: null, from: null, frame: 0 };

  // ---------- small helpers ----------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const num = (v, digits = 3) => (isNum(v) ? v.toFixed(digits) : "—");
  const pct = (v) => (isNum(v) ? `${(v * 100).toFixed(1)}%` : "—");
  const seconds = (v) => (isNum(v) ? `${v.toFixed(2)} s` : "—");
  const words = (s) => String(s).replace(/_/g, " ");

  function timeEl(iso, withDate = true) {
    if (!iso) return el("span", { text: "—" });
    const d = new Date(iso);
    const text = withDate ? d.toLocaleString() : d.toLocaleTimeString();
    return el("time", { datetime: iso, title: iso, text });
  }

  function segmentText(segment) {
    if (!segment || (!isNum(segment.start) && !isNum(segment.end))) return "whole recording";
    return `${num(segment.start, 2)}–${num(segment.end, 2)} s`;
  }

  function badge(text, extra = "") {
    return el("li", { className: `badge ${extra}`.trim(), text: words(text) });
  }

  function showStatus(message, kind = "info") {
    ui.status.hidden = false;
    ui.status.dataset.kind = kind;
    ui.status.setAttribute("aria-live", kind === "error" ? "assertive" : "polite");
    ui.status.replaceChildren(
      el("span", { className: "status-text", text: message }),
      el("button", { type: "button", className: "link", "aria-label": "Dismiss message", text: "×" }),
    );
    ui.status.querySelector("button").addEventListener("click", clearStatus);
  }

  function clearStatus() {
    ui.status.hidden = true;
    ui.status.replaceChildren();
    delete ui.status.dataset.kind;
  }

  // ---------- the API ----------

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail);
      this.status = status;
      this.code = code;
      this.detail = detail;
    }
  }

  function parseJson(text) {
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }

  // One authorised request; a problem response becomes an ApiError. The caller reads the body.
  async function send(method, path, body, accept) {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) {
      askForKey();
      throw new ApiError(401, "unauthorized", "enter your API key first");
    }
    const init = {
      method,
      cache: "no-store",
      headers: { Authorization: `Bearer ${key}`, Accept: accept },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init); // relative: works behind a path prefix too
    } catch (err) {
      throw new ApiError(0, "network_error", `could not reach the server (${err.message})`);
    }
    if (!response.ok) {
      const data = parseJson(await response.text().catch(() => ""));
      const code = (data && data.code) || `http_${response.status}`;
      const detail = (data && data.detail) || response.statusText || "the request failed";
      const error = new ApiError(response.status, code, detail);
      if (response.status === 401 || response.status === 403) askForKey(error);
      throw error;
    }
    return response;
  }

  async function api(method, path, body) {
    const response = await send(method, path, body, "application/json, application/problem+json");
    return parseJson(await response.text());
  }

  // Any error that is not an auth error (those already asked for the key) goes to the status area.
  function report(error, prefix = "") {
    if (!(error instanceof ApiError)) {
      console.error(error);
      showStatus(`${prefix}Something went wrong in the page: ${error.message}`, "error");
      return;
    }
    if (error.status === 401 || error.status === 403) return;
    showStatus(`${prefix}${error.detail} (${error.code})`, "error");
  }

  // ---------- the key ----------

  function askForKey(error) {
    sessionStorage.removeItem(KEY_STORE);
    stopLeaseTimer();
    ui.audio.pause();
    ui.workspace.hidden = true;
    ui.keySection.hidden = false;
    ui.forgetKey.hidden = true;
    ui.keyState.textContent = "No API key";
    if (error && error.status === 403) {
      showStatus(
        `Forbidden: ${error.detail}. The review queue needs a reviewer or admin key; enter another key.`,
        "error",
      );
    } else if (error) {
      showStatus(`Unauthorized: ${error.detail}. Enter your API key again.`, "error");
    }
    ui.keyInput.value = "";
    ui.keyInput.focus();
  }

  async function useKey(value) {
    sessionStorage.setItem(KEY_STORE, value);
    ui.keyInput.value = "";
    clearStatus();
    try {
      await loadQueue(); // the first data call checks the key
    } catch (error) {
      report(error);
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return;
    }
    if (!sessionStorage.getItem(KEY_STORE)) return;
    ui.keySection.hidden = true;
    ui.workspace.hidden = false;
    ui.forgetKey.hidden = false;
    ui.keyState.textContent = "Key in use (this tab only)";
    await restoreHeld();
    if (!state.held) ui.claimNext.focus();
  }

  function forgetKey() {
    sessionStorage.removeItem(KEY_STORE);
    sessionStorage.removeItem(HELD_STORE);
    state.held = null;
    showItem(null);
    askForKey();
    showStatus("The key was removed from this tab.", "info");
  }

  // ---------- the queue ----------

  async function loadQueue(more = false) {
    const params = new URLSearchParams({ status: "pending", limit: String(PAGE) });
    if (more && state.cursor) params.set("cursor", state.cursor);
    const page = await api("GET", `v1/review-items?${params}`);
    state.queue = more ? state.queue.concat(page.items) : page.items;
    state.cursor = page.next_cursor;
    renderQueue();
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
        const meta = el(
          "p",
          { className: "meta" },
          `Segment ${segmentText(segment)}`,
          segment.role ? ` · ${segment.role}` : "",
          item.domain ? ` · ${item.domain}` : "",
          " · created ",
          timeEl(item.created_at),
        );
        const claim = el("button", {
          type: "button",
          className: "secondary small",
          "data-id": item.id,
          "aria-label": `Claim the item created ${new Date(item.created_at).toLocaleString()}`,
          text: "Claim",
        });
        claim.disabled = Boolean(state.held) || state.busy;
        claim.addEventListener("click", () => claimItem(item.id));
        return el(
          "li",
          { className: "queue-item", "data-id": item.id },
          el(
            "div",
            { className: "qi-main" },
            el("span", { className: "model-label" }, "Model: ", el("strong", { text: item.model_label })),
            reasons,
          ),
          meta,
          claim,
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

  function claimNext() {
    return busy(async () => {
      try {
        const item = await api("POST", "v1/review-items/claim-next");
        await hold(item);
        showStatus("Claimed the oldest waiting item.", "success");
      } catch (error) {
        if (error instanceof ApiError && error.code === "queue_empty") {
          showStatus("The queue is empty: nothing is waiting for review.", "info");
          await loadQueue().catch(report);
        } else report(error, "Could not claim: ");
      }
    });
  }

  function claimItem(id) {
    return busy(async () => {
      try {
        const item = await api("POST", `v1/review-items/${encodeURIComponent(id)}/claim`);
        await hold(item);
        showStatus("Claimed.", "success");
      } catch (error) {
        report(error, "Could not claim: ");
        await loadQueue().catch(report);
      }
    });
  }

  async function hold(item) {
    state.held = item;
    sessionStorage.setItem(HELD_STORE, item.id);
    showItem(item);
    ui.itemHeading.focus();
    await loadQueue().catch(report);
    loadJob(item).catch((error) => report(error, "Could not load the job: "));
  }

  // After a reload: find the item this tab held among the claimed ones.
  async function restoreHeld() {
    const id = sessionStorage.getItem(HELD_STORE);
    if (!id || state.held) return;
    let cursor = null;
    try {
      for (let pages = 0; pages < 10; pages += 1) {
        const params = new URLSearchParams({ status: "claimed", limit: "200" });
        if (cursor) params.set("cursor", cursor);
        const page = await api("GET", `v1/review-items?${params}`);
        const found = page.items.find((i) => i.id === id);
        if (found) {
          state.held = found;
          showItem(found);
          renderQueue();
          loadJob(found).catch((error) => report(error, "Could not load the job: "));
          showStatus("You still hold this item.", "info");
          return;
        }
        cursor = page.next_cursor;
        if (!cursor) break;
      }
      sessionStorage.removeItem(HELD_STORE);
      showStatus("The item you held is no longer claimed (its lease expired or it was resolved).", "info");
    } catch (error) {
      report(error);
    }
  }

  function dropHeld() {
    state.held = null;
    sessionStorage.removeItem(HELD_STORE);
    showItem(null);
  }

  // ---------- the claimed item ----------

  function showItem(item) {
    stopLeaseTimer();
    listen.focus = null; // set again from this item's details below
    resetAudio();
    if (!item) {
      ui.itemSection.hidden = true;
      updateButtons();
      return;
    }
    ui.itemSection.hidden = false;
    ui.itemSection.dataset.id = item.id;
    ui.randomWeights.hidden = true;
    ui.randomWeights.replaceChildren();

    const segment = item.segment || {};
    const facts = [
      ["Item", el("code", { text: item.id })],
      ["Job", el("code", { text: item.job_id })],
      ["Segment", `${segmentText(segment)}${isNum(segment.index) ? ` (#${segment.index})` : ""}`],
      ["Role", segment.role || "—"],
      ["Domain", item.domain || "—"],
      ["Model label", el("strong", { text: item.model_label })],
      ["Created", timeEl(item.created_at)],
    ];
    ui.facts.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
    ui.reasons.replaceChildren(...item.reasons.map((r) => badge(r)));
    renderReasonDetails(item, null);
    renderBars(ui.modelScores, item.model_scores, item.model_label);
    const enhanced = item.reason_details && item.reason_details.enhanced_scores;
    ui.enhancedWrap.hidden = !enhanced;
    if (enhanced) renderBars(ui.enhancedScores, enhanced, item.model_label);

    for (const input of ui.labels.querySelectorAll("input")) input.checked = false;
    ui.note.value = "";
    startLeaseTimer(item);
    updateButtons();
    loadAudio(item);
  }

  function renderBars(list, scores, highlight) {
    const entries = Object.entries(scores || {}).filter(([, v]) => isNum(v));
    entries.sort((a, b) => b[1] - a[1]);
    list.replaceChildren(
      ...entries.map(([label, value]) => {
        const fill = el("span", { className: "bar-fill" });
        fill.style.width = `${Math.max(0, Math.min(1, value)) * 100}%`; // CSSOM, allowed by the CSP
        return el(
          "li",
          { className: label === highlight ? "bar top" : "bar" },
          el("span", { className: "bar-label", text: label }),
          el("span", { className: "bar-track", "aria-hidden": "true" }, fill),
          el("span", { className: "bar-value", text: pct(value) }),
        );
      }),
    );
  }

  // Numbers under any key that mentions "focus", wherever they sit in the enhancement details.
  function focusNumbers(value, path = [], out = []) {
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) focusNumbers(v, path.concat(k), out);
    } else if (isNum(value) && path.some((p) => /focus/i.test(p))) {
      out.push([path.join(" › "), value]);
    }
    return out;
  }

  function renderReasonDetails(item, jobSegment) {
    const details = item.reason_details || {};
    const enhancement = details.enhancement || (jobSegment && jobSegment.enhancement) || {};
    const rows = [];
    const scores = item.model_scores || {};
    const fd = enhancement.fear_disgust;
    showFocusWindow(item, fd && fd.focus_window);

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
      const fw = fd.focus_window; // analysis.focus: the stretch where fear and disgust separate most
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
    } else if (isNum(scores.fearful) && isNum(scores.disgusted)) {
      rows.push(["Fear/disgust margin (model scores)", num(Math.abs(scores.fearful - scores.disgusted))]);
    }
    const dual = enhancement.dual_emotion;
    if (dual && Array.isArray(dual.labels)) {
      rows.push(["Dual emotion", dual.labels.map((l, i) => `${l} ${pct((dual.scores || [])[i])}`).join(" vs ")]);
    }
    // Any other focus numbers: not the window shown above, nor settings (policy.focus_weight).
    const rest = { ...enhancement, policy: undefined, domain_profile: undefined };
    if (fd) rest.fear_disgust = { ...fd, focus_window: undefined };
    for (const [path, value] of focusNumbers(rest)) rows.push([words(path), num(value)]);
    const profile = enhancement.domain_profile;
    if (profile && typeof profile === "object" && profile.domain) {
      rows.push([
        "Domain profile",
        profile.applied ? `${profile.domain} v${profile.version}` : `${profile.domain}: ${profile.why || "not applied"}`,
      ]);
    }
    const quality = details.quality;
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

  async function loadJob(item) {
    const job = await api("GET", `v1/jobs/${encodeURIComponent(item.job_id)}`);
    if (!state.held || state.held.id !== item.id) return; // moved on meanwhile
    const result = job && job.result;
    if (!result) return;
    const model = result.model || {};
    if (model.random_weights) {
      ui.randomWeights.replaceChildren(
        el("strong", { text: "Random model weights. " }),
        `The model (${model.id || "unknown"}${model.revision ? ` @ ${model.revision}` : ""}) that scored this job ` +
          "had random weights: its label and scores carry no information. Judge from the recording alone.",
      );
      ui.randomWeights.hidden = false;
    }
    const segments = Array.isArray(result.segments) ? result.segments : [];
    const index = item.segment && item.segment.index;
    const jobSegment = isNum(index) ? segments.find((s) => s.index === index) || segments[index] : null;
    if (jobSegment && !(item.reason_details && item.reason_details.enhancement)) renderReasonDetails(item, jobSegment);
  }

  // ---------- the segment's audio ----------

  const segmentStart = (item) => (item && item.segment && isNum(item.segment.start) ? item.segment.start : 0);

  function audioNote(text, kind = "") {
    ui.audioNote.textContent = text;
    if (kind) ui.audioNote.dataset.kind = kind;
    else delete ui.audioNote.dataset.kind;
  }

  // Stop playing, forget the item's audio and free its object URL.
  function resetAudio() {
    listen.loading += 1; // a fetch still under way for the previous item is dropped when it lands
    stopFocus();
    ui.audio.pause();
    ui.audio.removeAttribute("src");
    ui.audio.load(); // lets go of the old media
    if (listen.url) URL.revokeObjectURL(listen.url);
    listen.url = null;
    listen.start = null;
    ui.audio.removeAttribute("aria-busy");
    audioNote("");
    updateFocusButton();
  }

  async function loadAudio(item) {
    const ticket = ++listen.loading;
    ui.audio.setAttribute("aria-busy", "true");
    audioNote("Loading the audio…");
    try {
      const response = await send(
        "GET",
        `v1/review-items/${encodeURIComponent(item.id)}/audio`,
        undefined,
        "audio/wav, application/problem+json",
      );
      const blob = await response.blob();
      if (ticket !== listen.loading) return; // moved on meanwhile
      const start = Number.parseFloat(response.headers.get("X-Emoq-Segment-Start"));
      const context = Number.parseFloat(response.headers.get("X-Emoq-Context-Seconds"));
      listen.start = Number.isFinite(start)
        ? start
        : Math.max(0, segmentStart(item) - (Number.isFinite(context) ? context : 1));
      listen.url = URL.createObjectURL(blob);
      ui.audio.src = listen.url;
      const into = segmentStart(item) - listen.start;
      const segment = item.segment || {};
      const length = isNum(segment.end) && isNum(segment.start) ? segment.end - segment.start : null;
      audioNote(
        `The clip starts at ${seconds(listen.start)} in the recording; the segment runs from ` +
          `${seconds(into)} to ${isNum(length) ? seconds(into + length) : "the end"} of the clip.`,
      );
    } catch (error) {
      if (ticket !== listen.loading) return;
      if (error instanceof ApiError) {
        if (error.status === 401 || error.status === 403) return; // the key is asked for again
        const what = error.code === "recording_missing" ? "The recording is no longer in storage" : "No audio";
        audioNote(`${what}: ${error.detail} (${error.code})`, "error");
      } else {
        console.error(error);
        audioNote(`No audio: ${error.message}`, "error");
      }
    } finally {
      if (ticket === listen.loading) ui.audio.removeAttribute("aria-busy");
      updateFocusButton();
    }
  }

  // analysis.focus: the stretch where fear and disgust separate most, relative to the segment start.
  function showFocusWindow(item, fw) {
    const ok = fw && typeof fw === "object" && isNum(fw.start) && isNum(fw.end) && fw.end > fw.start;
    listen.focus = ok ? { start: fw.start, end: fw.end } : null;
    if (ok) {
      const at = segmentStart(item);
      ui.focusWhere.textContent = `${num(at + fw.start, 2)}–${num(at + fw.end, 2)} s in the recording`;
    }
    updateFocusButton();
  }

  function updateFocusButton() {
    ui.playFocus.hidden = !listen.focus;
    ui.focusWhere.hidden = !listen.focus;
    ui.playFocus.disabled = !listen.focus || !listen.url;
  }

  function playFocus() {
    if (!listen.focus || !listen.url || !state.held) return;
    const offset = segmentStart(state.held) - listen.start; // the context actually before the segment
    let from = Math.max(0, offset + listen.focus.start);
    let to = offset + listen.focus.end;
    if (Number.isFinite(ui.audio.duration)) {
      to = Math.min(to, ui.audio.duration);
      from = Math.min(from, to);
    }
    listen.from = from;
    listen.stopAt = to;
    ui.audio.currentTime = from;
    ui.audio.play().catch((error) => {
      stopFocus();
      if (error.name !== "AbortError") audioNote(`Could not play: ${error.message}`, "error");
    });
    cancelAnimationFrame(listen.frame);
    const tick = () => {
      if (listen.stopAt === null) return;
      checkFocusEnd();
      if (listen.stopAt !== null) listen.frame = requestAnimationFrame(tick);
    };
    listen.frame = requestAnimationFrame(tick);
  }

  // Checked every frame (and on timeupdate, for a background tab where frames stop).
  function checkFocusEnd() {
    if (listen.stopAt !== null && ui.audio.currentTime >= listen.stopAt) {
      ui.audio.pause();
      stopFocus();
    }
  }

  function stopFocus() {
    listen.stopAt = null;
    listen.from = null;
    cancelAnimationFrame(listen.frame);
    listen.frame = 0;
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
      const expires = new Date(item.lease_expires_at);
      const left = Math.round((expires - Date.now()) / 1000);
      ui.lease.replaceChildren();
      if (left > 0) {
        const mm = Math.floor(left / 60);
        const ss = String(left % 60).padStart(2, "0");
        ui.lease.append("Lease expires at ", timeEl(item.lease_expires_at, false), ` (${mm}:${ss} left)`);
        ui.lease.dataset.kind = left <= 60 ? "warning" : "";
      } else {
        ui.lease.append(
          "Lease expired at ",
          timeEl(item.lease_expires_at, false),
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

  function selectedLabel() {
    const checked = ui.labels.querySelector("input:checked");
    return checked ? checked.value : null;
  }

  function resolve(event) {
    event.preventDefault();
    const item = state.held;
    if (!item) return;
    const label = selectedLabel();
    if (!label) {
      showStatus("Pick a label first.", "error");
      ui.labels.querySelector("input").focus();
      return;
    }
    const note = ui.note.value.trim();
    return busy(async () => {
      try {
        await api("POST", `v1/review-items/${encodeURIComponent(item.id)}/resolve`, { label, note: note || null });
        dropHeld();
        showStatus(`Resolved as “${label}”.`, "success");
        ui.claimNext.focus();
      } catch (error) {
        report(error, "Could not resolve: ");
        if (error instanceof ApiError && (error.code === "not_claimed" || error.code === "already_resolved")) {
          dropHeld();
        }
      }
      await loadQueue().catch(report);
    });
  }

  function release() {
    const item = state.held;
    if (!item) return;
    return busy(async () => {
      try {
        await api("POST", `v1/review-items/${encodeURIComponent(item.id)}/release`);
        dropHeld();
        showStatus("Released: the item is back in the queue.", "success");
        ui.claimNext.focus();
      } catch (error) {
        report(error, "Could not release: ");
        if (error instanceof ApiError && error.code === "not_claimed") dropHeld();
      }
      await loadQueue().catch(report);
    });
  }

  // ---------- wiring ----------

  function buildLabelPicker() {
    ui.labels.replaceChildren(
      ...LABELS.map((label, i) => {
        const id = `label-${label}`;
        return el(
          "div",
          { className: "label-option" },
          el("input", { type: "radio", name: "label", id, value: label, required: true }),
          el("label", { for: id }, el("kbd", { text: String(i + 1) }), ` ${label}`),
        );
      }),
    );
  }

  function onKey(event) {
    if (ui.itemSection.hidden || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target && (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type !== "radio"))) return;
    const n = Number(event.key);
    if (Number.isInteger(n) && n >= 1 && n <= LABELS.length) {
      const input = $(`label-${LABELS[n - 1]}`);
      input.checked = true;
      input.focus();
      event.preventDefault();
    }
  }

  function init() {
    buildLabelPicker();
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
    ui.claimNext.addEventListener("click", claimNext);
    ui.refresh.addEventListener("click", () =>
      busy(async () => {
        await loadQueue().catch(report);
      }),
    );
    ui.loadMore.addEventListener("click", () =>
      busy(async () => {
        await loadQueue(true).catch(report);
      }),
    );
    ui.resolveForm.addEventListener("submit", resolve);
    ui.playFocus.addEventListener("click", playFocus);
    ui.audio.addEventListener("timeupdate", checkFocusEnd);
    ui.audio.addEventListener("pause", stopFocus);
    ui.audio.addEventListener("ended", stopFocus);
    ui.audio.addEventListener("seeking", () => {
      // The reviewer moved the playhead out of the window: play on normally from there.
      const t = ui.audio.currentTime;
      if (listen.stopAt !== null && (t < listen.from - 0.05 || t > listen.stopAt)) stopFocus();
    });
    ui.audio.addEventListener("error", () => {
      if (listen.url) audioNote("The browser could not play this audio.", "error");
    });
    ui.release.addEventListener("click", release);
    document.addEventListener("keydown", onKey);

    const key = sessionStorage.getItem(KEY_STORE);
    if (key) useKey(key);
    else ui.keyInput.focus();
  }

  init();
})();
