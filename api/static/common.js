// emoq review pages: what the queue page and the stats page share. Plain
// browser JavaScript, no build step. Everything from the API is put on the
// page with textContent (never as HTML). The API key lives in this tab's
// sessionStorage only.
"use strict";

window.Emoq = (() => {
  const KEY_STORE = "emoq.review.apiKey";
  const LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"];
  // The app's root, from where this file is served (…/review/static/common.js), so that
  // the pages work behind a path prefix too.
  const ROOT = new URL("../../", document.currentScript.src);

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
    return el("time", { datetime: iso, title: iso, text: withDate ? d.toLocaleString() : d.toLocaleTimeString() });
  }

  // ---------- the status line ----------

  // Success and info messages go after a few seconds; errors stay until dismissed.
  function status(area, keepMs = 4000) {
    let timer = 0;
    function clear() {
      clearTimeout(timer);
      area.hidden = true;
      area.replaceChildren();
      delete area.dataset.kind;
    }
    function show(message, kind = "info") {
      area.hidden = false;
      area.dataset.kind = kind;
      area.setAttribute("aria-live", kind === "error" ? "assertive" : "polite");
      const dismiss = el("button", { type: "button", className: "link", "aria-label": "Dismiss message", text: "×" });
      dismiss.addEventListener("click", clear);
      area.replaceChildren(el("span", { className: "status-text", text: message }), dismiss);
      clearTimeout(timer);
      if (kind !== "error") timer = setTimeout(clear, keepMs);
    }
    return { show, clear };
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

  // onAuthError(error) is called for 401/403 answers (the page asks for another key).
  function client(onAuthError) {
    async function send(method, path, body, accept) {
      const key = sessionStorage.getItem(KEY_STORE);
      if (!key) {
        const error = new ApiError(401, "unauthorized", "enter your API key first");
        onAuthError(null);
        throw error;
      }
      const init = { method, cache: "no-store", headers: { Authorization: `Bearer ${key}`, Accept: accept } };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let response;
      try {
        response = await fetch(new URL(path, ROOT), init);
      } catch (err) {
        throw new ApiError(0, "network_error", `could not reach the server (${err.message})`);
      }
      if (!response.ok) {
        const data = parseJson(await response.text().catch(() => ""));
        const code = (data && data.code) || `http_${response.status}`;
        const detail = (data && data.detail) || response.statusText || "the request failed";
        const error = new ApiError(response.status, code, detail);
        if (response.status === 401 || response.status === 403) onAuthError(error);
        throw error;
      }
      return response;
    }
    async function api(method, path, body) {
      const response = await send(method, path, body, "application/json, application/problem+json");
      return parseJson(await response.text());
    }
    return { send, api };
  }

  const key = {
    get: () => sessionStorage.getItem(KEY_STORE),
    set: (value) => sessionStorage.setItem(KEY_STORE, value),
    forget: () => sessionStorage.removeItem(KEY_STORE),
  };

  return { LABELS, el, isNum, num, pct, seconds, words, timeEl, status, ApiError, client, key };
})();
