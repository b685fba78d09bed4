// ragtune UI: what every page shares. Pages call the public API (the same any client uses) with the
// user's key as a bearer token, and build the DOM with `RT.el`, which writes text as text: file names,
// chunk text and model answers are untrusted and never become HTML.
"use strict";

const RT = (() => {
  const strings = JSON.parse(document.getElementById("rt-strings").textContent);
  const lang = document.body.dataset.lang || "en";
  const KEY = "ragtune.key";

  /** The UI string `key` in the page's language, `{name}` placeholders filled from `vars`. */
  function t(key, vars) {
    let text = strings[key] ?? key;
    for (const [name, value] of Object.entries(vars || {})) text = text.replaceAll(`{${name}}`, String(value));
    return text;
  }

  const key = () => localStorage.getItem(KEY) || "";

  /** Keep the key: in this browser's storage (for the API's bearer header) and as the cookie the
   * server reads for page loads only (SameSite=Strict: never sent by another site). */
  function setKey(value) {
    localStorage.setItem(KEY, value);
    document.cookie = `ragtune_key=${encodeURIComponent(value)}; path=/; SameSite=Strict`;
  }

  function clearKey() {
    localStorage.removeItem(KEY);
    document.cookie = "ragtune_key=; path=/; SameSite=Strict; max-age=0";
  }

  function headers(extra) {
    return Object.assign(key() ? { Authorization: `Bearer ${key()}` } : {}, extra || {});
  }

  class APIError extends Error {
    constructor(status, body) {
      const error = body && body.error;
      super((error && error.message) || `HTTP ${status}`);
      this.status = status;
      this.param = error && error.param;
      this.code = error && error.code;
    }
  }

  /** `fetch`, with a network failure (server down, connection lost) as an APIError in the page's
   * language, and a 401 sending the user to the key prompt (also when the key was turned on after the
   * page loaded; the login page itself shows the refusal). */
  async function request(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new APIError(0, { error: { message: t("common.network_error") } });
    }
    if (response.status === 401 && document.body.dataset.section !== "login") toLogin();
    return response;
  }

  function toLogin() {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  }

  /** `method` `path` with a JSON `body` (or FormData); the parsed JSON answer, or APIError. */
  async function api(method, path, body, init) {
    const options = Object.assign({ method, headers: headers() }, init || {});
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) {
      options.body = JSON.stringify(body);
      options.headers["Content-Type"] = "application/json";
    }
    const response = await request(path, options);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) throw new APIError(response.status, data);
    return data;
  }

  /** Every item of a paged list route (`limit` per page, following `after` while `has_more`); `path`
   * may carry its own query string. */
  async function listAll(path, limit = 100) {
    const items = [];
    let after = null;
    for (;;) {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api("GET", `${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      items.push(...page.data);
      if (!page.has_more || !page.last_id) return items;
      after = page.last_id;
    }
  }

  /** POST `body` to `path` and yield each server-sent event's JSON (`data: [DONE]` ends it). */
  async function* sse(path, body, signal) {
    const response = await request(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) throw new APIError(response.status, await response.json().catch(() => null));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  /** An element: attributes (`class`, `text`, `dataset`, `on<event>` handlers, others as attributes)
   * and children (nodes, or strings added as text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child == null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const locale = lang === "zh" ? "zh-CN" : "en";
  const fmt = {
    date: (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString(locale) : "—"),
    num: (x, digits = 3) => (x == null || Number.isNaN(x) ? "—" : Number(x).toFixed(digits)),
    int: (x) => (x == null ? "—" : Number(x).toLocaleString(locale)),
    bytes: (n) => {
      if (n == null) return "—";
      const units = ["B", "KB", "MB", "GB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) {
        n /= 1024;
        i += 1;
      }
      return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
    },
    duration: (seconds) => {
      if (seconds == null) return "—";
      const s = Math.round(seconds);
      return s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
    },
  };

  const errorMessage = (error) => (error && error.message) || String(error);

  /** Replace `container`'s content with an alert saying what went wrong. */
  function showError(container, error) {
    container.replaceChildren(el("p", { class: "alert", role: "alert" }, `${t("common.error")}: ${errorMessage(error)}`));
  }

  /** Status badge: the API's status word, styled by kind, shown in the page's language
   * (`<prefix>.<status>`, common.st by default; a word without a string is shown as the API says it). */
  function badge(status, prefix = "common.st") {
    const name = `${prefix}.${status}`;
    return el("span", { class: `badge badge-${status}`, dataset: { status }, text: name in strings ? strings[name] : status });
  }

  /** In Chinese, what an API error code means (`<prefix>.<code>` strings: the server's own message
   * after it stays English); in English, or for a code without a string, nothing. */
  function explain(prefix, code) {
    const name = `${prefix}.${code}`;
    return lang === "zh" && name in strings ? el("span", { class: "code-text", text: `${strings[name]}：` }) : null;
  }

  /** A cell of a table that stacks on a phone (`table.stack` in app.css): its column's header as
   * `data-label` (shown before the value there), the content in one box; `attrs.class` on the cell,
   * `attrs.text` as the box's text. */
  function cell(table, index, attrs, ...children) {
    const label = table.tHead.rows[0].cells[index].textContent.trim();
    return el("td", { "data-label": label, class: attrs.class }, el("div", { text: attrs.text }, ...children));
  }

  /** Show the chosen files' names beside each `.file-input` (in its `.file-pick`), or "no file". */
  function setupFilePickers() {
    for (const input of document.querySelectorAll(".file-pick .file-input")) {
      const name = input.parentElement.querySelector(".file-name");
      const show = () => {
        const files = [...input.files];
        name.textContent = files.length ? files.map((f) => f.name).join(", ") : t("common.no_file");
      };
      input.addEventListener("change", show);
      show();
    }
  }

  function setupChrome() {
    setupFilePickers();
    const toggle = document.getElementById("nav-toggle");
    const nav = document.getElementById("nav");
    if (toggle && nav) {
      toggle.addEventListener("click", () => {
        const open = nav.classList.toggle("open");
        toggle.setAttribute("aria-expanded", String(open));
      });
      document.addEventListener("keydown", (event) => {
        if (event.key !== "Escape" || !nav.classList.contains("open")) return;
        nav.classList.remove("open"); // Escape closes the phone menu, focus back on its button
        toggle.setAttribute("aria-expanded", "false");
        toggle.focus();
      });
    }
    const signOut = document.getElementById("sign-out");
    if (signOut) {
      signOut.hidden = !key();
      signOut.addEventListener("click", () => {
        clearKey();
        toLogin();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", setupChrome);
  return { t, lang, key, setKey, clearKey, api, listAll, sse, el, fmt, errorMessage, showError, badge, cell, explain, APIError };
})();
