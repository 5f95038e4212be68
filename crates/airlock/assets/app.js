// Airlock web UI: the few behaviours pages need, on top of the JSON admin API.
// Pages are rendered by the server; this script only sends actions, opens
// dialogs and shows feedback. It never receives a credential value.
"use strict";

(function () {
  const FLASH_KEY = "airlock.flash";
  const DRAFT_KEY = "airlock.draft";
  const SESSION_ENDED = "Your session has ended (logged out elsewhere, or expired), so this was not saved.";

  // ----- API -----

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, url, body) {
    const opts = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    };
    if (method !== "GET") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    let resp;
    try {
      resp = await fetch(url, opts);
    } catch (e) {
      throw new ApiError("Cannot reach the Airlock server. Check that it is running and try again.", 0, "network");
    }
    let data = null;
    const type = resp.headers.get("Content-Type") || "";
    if (type.includes("application/json")) {
      try { data = await resp.json(); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const code = data && data.code;
      // A session that ended is said where the operator acted (the caller
      // keeps what can be kept); nothing navigates away on its own.
      if (resp.status === 401 && code === "not_authenticated") throw new ApiError(SESSION_ENDED, 401, code);
      const detail = (data && data.detail) || ("Request failed (" + resp.status + " " + resp.statusText + ")");
      throw new ApiError(detail, resp.status, code);
    }
    return data;
  }

  // A POST whose answer is a file (the export): returns { blob, filename }.
  async function download(url, body) {
    let resp;
    try {
      resp = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/octet-stream, application/json" },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError("Cannot reach the Airlock server. Check that it is running and try again.", 0, "network");
    }
    if (!resp.ok) {
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      const code = data && data.code;
      if (resp.status === 401 && code === "not_authenticated") throw new ApiError(SESSION_ENDED, 401, code);
      throw new ApiError((data && data.detail) || ("Request failed (" + resp.status + ")"), resp.status, code);
    }
    const disposition = resp.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(disposition);
    return { blob: await resp.blob(), filename: m ? m[1] : "airlock.airlock" };
  }

  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function fileBase64(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => {
        const s = String(r.result);
        resolve(s.slice(s.indexOf(",") + 1));
      };
      r.onerror = () => reject(new ApiError("Cannot read the chosen file."));
      r.readAsDataURL(file);
    });
  }

  // ----- import preview -----

  function importRow(tbody, kind, name, detail, result) {
    const tr = document.createElement("tr");
    const cells = [kind, name, result];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        const code = document.createElement("span");
        code.className = "mono";
        code.textContent = name;
        td.appendChild(code);
        if (detail) {
          const d = document.createElement("span");
          d.className = "muted small";
          d.textContent = " " + detail;
          td.appendChild(d);
        }
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }

  function showImportPreview(p) {
    const form = document.querySelector("form[data-form=import-commit]");
    const upload = document.querySelector("form[data-form=import-preview]");
    form.elements.token.value = p.token;
    const tbody = form.querySelector("[data-import-rows]");
    tbody.replaceChildren();
    const exists = "exists here: skipped or overwritten, as chosen below";
    p.credentials.add.forEach((c) => importRow(tbody, "Credential", c.name, c.value_exists ? "" : "(no value)", "added"));
    p.credentials.conflict.forEach((c) => importRow(tbody, "Credential", c.name, "", exists));
    p.profiles.add.forEach((x) => importRow(tbody, "Profile", x.id, x.description, "added"));
    p.profiles.conflict.forEach((x) => importRow(tbody, "Profile", x.id, x.description, exists));
    if (p.executions > 0) {
      importRow(tbody, "History", p.executions + " execution" + (p.executions === 1 ? "" : "s"), "", "added (ones already here are skipped)");
    }
    form.querySelector("[data-import-choice=credentials]").hidden = p.credentials.conflict.length === 0;
    form.querySelector("[data-import-choice=profiles]").hidden = p.profiles.conflict.length === 0;
    form.querySelectorAll("input[type=radio][value=skip]").forEach((r) => { r.checked = true; });
    const when = new Date(p.exported_at);
    form.querySelector("[data-import-summary]").textContent =
      "File exported " + (isNaN(when) ? p.exported_at : when.toLocaleString()) +
      ". Nothing has been written yet; confirm within " + Math.round(p.expires_in / 60) + " minutes.";
    formError(form, "");
    upload.hidden = true;
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
  }

  function importCounts(label, c) {
    const parts = [c.added + " added"];
    if (c.overwritten) parts.push(c.overwritten + " overwritten");
    if (c.skipped) parts.push(c.skipped + " skipped");
    return label + ": " + parts.join(", ");
  }

  const enc = encodeURIComponent;
  const profileId = () => document.body.dataset.profile;

  // ----- feedback -----

  // The notice is a toast fixed in the viewport (app.css), so it is seen
  // wherever the page was scrolled to; it lets clicks through.
  function showFlash(message, isError) {
    const el = document.getElementById("flash");
    if (!el) { if (isError) alert(message); return; }
    el.textContent = message;
    el.classList.toggle("notice-error", !!isError);
    el.setAttribute("role", isError ? "alert" : "status");
    el.hidden = false;
  }

  // The comparison of two executions (GET /api/admin/executions/{id}/diff), built
  // with textContent only: every string in it comes from scripts and upstreams.
  function renderComparison(box, d) {
    box.replaceChildren();
    const add = (parent, tag, text, cls) => {
      const e = document.createElement(tag);
      if (text !== undefined) e.textContent = text;
      if (cls) e.className = cls;
      parent.appendChild(e);
      return e;
    };
    const show = (v) => (v === null || v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v));
    add(box, "p", d.identical
      ? "Identical: same script, inputs, answers and outputs (only the clock moved)."
      : "These executions differ:", d.identical ? "ok-note" : "field-warning");
    const list = add(box, "ul", undefined, "compare-list");
    if (!d.script.same) add(list, "li", "The script changed.");
    if (!d.inputs.recorded) add(list, "li", "Inputs were not recorded for both (the profile's “Input records” was off): packages and answers cannot be compared by content.");
    if (d.inputs.recorded && !d.inputs.python.same) add(list, "li", "Python: " + show(d.inputs.python.a) + " → " + show(d.inputs.python.b));
    const p = d.inputs.packages;
    for (const [n, v] of Object.entries(p.added)) add(list, "li", "Package added: " + n + " " + v);
    for (const [n, v] of Object.entries(p.removed)) add(list, "li", "Package removed: " + n + " " + v);
    for (const [n, v] of Object.entries(p.changed)) add(list, "li", "Package " + n + ": " + v[0] + " → " + v[1]);
    for (const [n, v] of Object.entries(p.rebuilt || {})) add(list, "li", "Package " + n + ": same version, other build (RECORD " + v[0].slice(0, 12) + "… → " + v[1].slice(0, 12) + "…)");
    for (const r of d.requests.filter((r) => r.changed)) {
      const what = r.method + " " + r.host + ":" + r.port + (r.path || "");
      const side = (x) => (x ? (x.allowed ? String(x.status ?? "no answer") : "refused") + (x.body_sha256 ? " body " + x.body_sha256.slice(0, 12) + "…" : "") : "not made");
      add(list, "li", "Answer changed: " + what + ": " + side(r.a) + " → " + side(r.b));
    }
    const o = d.outputs;
    if (!o.status.same) add(list, "li", "Status: " + show(o.status.a) + " → " + show(o.status.b));
    for (const c of o.result.changes) add(list, "li", "Result " + (c.path || "(whole)") + ": " + show(c.a) + " → " + show(c.b));
    if (!o.error.same) add(list, "li", "Error: " + show(o.error.a) + " → " + show(o.error.b));
    for (const [name, t] of [["Script", d.script], ["Stdout", o.stdout], ["Stderr", o.stderr]]) {
      if (t.same) continue;
      add(box, "h3", name + " diff");
      add(box, "pre", t.diff, "code");
    }
    for (const r of d.requests.filter((r) => r.body_diff)) {
      add(box, "h3", "Answer diff: " + r.method + " " + r.host + ":" + r.port + (r.path || ""));
      add(box, "pre", r.body_diff, "code");
    }
    box.hidden = false;
  }

  function reloadWith(message, url) {
    try { sessionStorage.setItem(FLASH_KEY, message); } catch (e) { /* private mode */ }
    if (url) location.assign(url); else location.reload();
  }

  function popFlash() {
    let msg = null;
    try {
      msg = sessionStorage.getItem(FLASH_KEY);
      sessionStorage.removeItem(FLASH_KEY);
    } catch (e) { /* ignore */ }
    if (msg) showFlash(msg, false);
  }

  function formError(form, message, withLogin) {
    const el = form.querySelector(".form-error");
    if (!el) { showFlash(message, true); return; }
    el.textContent = message || "";
    if (message && withLogin) {
      const a = document.createElement("a");
      a.href = loginUrl();
      a.textContent = "Log in again";
      el.append(" ", a, ".");
    }
    el.hidden = !message;
  }

  function loginUrl() {
    return "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  // ----- drafts: what a form held when its save met an ended session -----

  // Never a secret: password fields, credential values, files and hidden
  // fields are left out.
  function draftable(el) {
    if (!el.name || el.disabled) return false;
    if (el.matches("[data-value-input], input[type=password], input[type=file], input[type=hidden]")) return false;
    return el.matches("input, textarea, select");
  }

  function saveDraft(form) {
    if (form.closest("dialog")) return false;
    const fields = [];
    Array.from(form.elements).filter(draftable).forEach((el) => {
      if (el.type === "checkbox" || el.type === "radio") fields.push([el.name, el.value, el.checked]);
      else fields.push([el.name, el.value, null]);
    });
    if (!fields.length) return false;
    try {
      sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ page: location.pathname + location.search, form: form.dataset.form, fields }));
    } catch (e) { return false; }
    return true;
  }

  function restoreDraft() {
    let draft = null;
    try {
      draft = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
      if (draft && draft.page === location.pathname + location.search) sessionStorage.removeItem(DRAFT_KEY);
    } catch (e) { draft = null; }
    if (!draft || draft.page !== location.pathname + location.search) return;
    const form = document.querySelector("form[data-form=\"" + draft.form + "\"]");
    if (!form) return;
    draft.fields.forEach(([name, value, checked]) => {
      Array.from(form.elements).filter((el) => el.name === name && draftable(el)).forEach((el) => {
        if (checked === null) el.value = value;
        else if (el.value === value) el.checked = checked;
      });
    });
    const details = form.closest("details");
    if (details) details.open = true;
    form.querySelectorAll("input[name=mode]:checked").forEach((r) => r.dispatchEvent(new Event("change", { bubbles: true })));
    showFlash("What you typed before your session ended is back in the form: check it and save again.", false);
  }

  // A warning five minutes before the session ends (idle limit, or its
  // absolute expiry), so nothing is typed into a page that can no longer save.
  async function warnBeforeSessionEnds() {
    if (!document.querySelector("header.topbar")) return;
    let status;
    try {
      const r = await fetch("/api/admin/status", { credentials: "same-origin", cache: "no-store" });
      status = await r.json();
    } catch (e) { return; }
    if (!status || !status.session_expires_at) return;
    const ends = new Date(status.session_expires_at);
    const wait = ends.getTime() - Date.now() - 5 * 60 * 1000;
    const warn = () => showFlash("Your session ends at " +
      ends.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
      " unless you keep working: save what you are typing. After that, log in again (what you typed in a form is kept, secret values excepted).", true);
    document.body.dataset.sessionWarning = new Date(Date.now() + Math.max(wait, 0)).toISOString();
    if (wait <= 0) warn();
    else if (wait < 2 ** 31) setTimeout(warn, wait);
  }

  // ----- dialogs -----

  function confirmDialog(opts) {
    const dlg = document.getElementById("confirm-dialog");
    if (!dlg || typeof dlg.showModal !== "function") {
      return Promise.resolve(window.confirm(opts.title + "\n\n" + (opts.text || "")));
    }
    dlg.querySelector("[data-confirm-title]").textContent = opts.title;
    dlg.querySelector("[data-confirm-text]").textContent = opts.text || "";
    const ok = dlg.querySelector("[data-confirm-ok]");
    ok.textContent = opts.ok || "Confirm";
    dlg.querySelector("[data-confirm-cancel]").textContent = opts.cancel || "Cancel";
    ok.className = "btn " + (opts.danger === false ? "btn-primary" : "btn-danger");
    dlg.returnValue = "";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
      dlg.showModal();
      dlg.querySelector("[data-confirm-cancel]").focus();
    });
  }

  function openValueDialog(name, desc) {
    const dlg = document.getElementById("value-dialog");
    if (!dlg) return;
    const form = dlg.querySelector("form");
    form.reset();
    formError(form, "");
    form.elements.name.value = name;
    dlg.querySelector("[data-value-name]").textContent = name;
    const d = dlg.querySelector("[data-value-desc]");
    d.textContent = desc || "";
    d.hidden = !desc;
    form.querySelector("[data-short-warning]").hidden = true;
    syncMultiline(form);
    dlg.showModal();
    form.elements.value.focus();
  }

  // The value dialog's multi-line switch: a textarea (line breaks kept) in
  // place of the masked one-line input.
  function syncMultiline(form) {
    const box = form.elements.multiline;
    if (!box) return;
    form.querySelector("[data-single-line]").hidden = box.checked;
    form.querySelector("[data-multi-line]").hidden = !box.checked;
  }

  // The database login of a credential form, or null when its host is empty.
  function dbLogin(form) {
    const el = form.elements;
    if (!el.db_host || !el.db_host.value.trim()) return null;
    const port = Number(el.db_port.value.trim() || "5432");
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ApiError("The database port is a number from 1 to 65535.");
    }
    if (!el.db_database.value.trim() || !el.db_user.value.trim()) {
      throw new ApiError("A database login needs its database and user.");
    }
    return {
      protocol: "postgres",
      host: el.db_host.value.trim(),
      port,
      database: el.db_database.value.trim(),
      user: el.db_user.value.trim(),
      tls: el.db_tls.value,
      read_only: el.db_read_only.checked,
    };
  }

  function openDescDialog(name, desc, seal) {
    const dlg = document.getElementById("desc-dialog");
    if (!dlg) return;
    const form = dlg.querySelector("form");
    formError(form, "");
    form.elements.name.value = name;
    form.elements.description.value = desc || "";
    if (seal && form.elements.mode) {
      form.elements.mode.value = seal.mode || "plain";
      form.elements.bound_hosts.value = seal.hosts || "";
      form.elements.bound_methods.value = seal.methods || "";
      form.elements.bound_header.value = seal.header || "";
      form.elements.substitute_in_body.checked = seal.body === "true";
      form.elements.revoke_on_violation.checked = seal.revoke === "true";
    }
    if (seal && form.elements.db_host) {
      form.elements.db_host.value = seal.dbHost || "";
      form.elements.db_port.value = seal.dbPort || "";
      form.elements.db_database.value = seal.dbDatabase || "";
      form.elements.db_user.value = seal.dbUser || "";
      form.elements.db_tls.value = seal.dbTls || "verify-full";
      form.elements.db_read_only.checked = seal.dbReadOnly === "true";
      form.dataset.hadDb = seal.dbHost ? "true" : "false";
      const details = form.querySelector("details.db-login");
      if (details) details.open = Boolean(seal.dbHost);
    }
    dlg.querySelector("[data-desc-name]").textContent = name;
    dlg.showModal();
    form.elements.description.focus();
  }

  // Ready-to-paste uses of a key: the command-line client, and MCP clients.
  function keySnippets(key) {
    const origin = location.origin;
    return {
      shell: "export AIRLOCK_URL=" + origin + "\nexport AIRLOCK_KEY='" + key + "'\nairlock exec script.py",
      mcp: JSON.stringify({
        mcpServers: { airlock: { type: "http", url: origin + "/mcp", headers: { Authorization: "Bearer " + key } } },
      }, null, 2),
      stdio: JSON.stringify({
        mcpServers: { airlock: { command: "airlock", args: ["mcp", "--url", origin], env: { AIRLOCK_KEY: key } } },
      }, null, 2),
    };
  }

  function showKey(key, message) {
    const dlg = document.getElementById("key-dialog");
    const out = dlg.querySelector("[data-key-output]");
    out.value = key;
    const snippets = keySnippets(key);
    dlg.querySelectorAll("[data-key-snippet]").forEach((el) => { el.value = snippets[el.dataset.keySnippet] || ""; });
    dlg.querySelector("[data-copy-status]").textContent = "";
    // Escape would close the dialog and lose the key: ask first.
    const onCancel = async (ev) => {
      ev.preventDefault();
      const lose = await confirmDialog({
        title: "Close without the key?",
        text: "The key is shown only this once. If it is not stored yet, closing means regenerating it later.",
        ok: "Close",
        cancel: "Back to the key",
      });
      if (lose) dlg.close(); else out.focus();
    };
    dlg.addEventListener("cancel", onCancel);
    dlg.addEventListener("close", () => {
      dlg.removeEventListener("cancel", onCancel);
      out.value = "";
      dlg.querySelectorAll("[data-key-snippet]").forEach((el) => { el.value = ""; });
      reloadWith(message);
    }, { once: true });
    dlg.showModal();
    out.focus();
    out.select();
  }

  async function copyKey() {
    const dlg = document.getElementById("key-dialog");
    const out = dlg.querySelector("[data-key-output]");
    const status = dlg.querySelector("[data-copy-status]");
    let done = false;
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(out.value); done = true; } catch (e) { done = false; }
    }
    if (!done) {
      out.focus();
      out.select();
      try { done = document.execCommand("copy"); } catch (e) { done = false; }
    }
    status.textContent = done
      ? "Copied to the clipboard."
      : "Could not copy automatically: the key is selected, press Ctrl+C (⌘C on a Mac).";
  }

  // ----- password strength -----

  function strength(pw, min) {
    const len = Array.from(pw).length;
    if (len === 0) return [0, null];
    if (len < min) return [1, "Too short: " + (min - len) + " more character" + (min - len === 1 ? "" : "s") + " needed."];
    let classes = 0;
    if (/[a-z]/.test(pw)) classes++;
    if (/[A-Z]/.test(pw)) classes++;
    if (/[0-9]/.test(pw)) classes++;
    if (/[^A-Za-z0-9]/.test(pw)) classes++;
    const unique = new Set(Array.from(pw)).size;
    if (unique < 5) return [1, "Too repetitive: use more different characters."];
    if (len >= 24 || (len >= 18 && classes >= 2) || (len >= 14 && classes >= 4)) return [4, "Strong."];
    if (len >= 16 || classes >= 3) return [3, "Good. A few more characters or words make it strong."];
    return [2, "Acceptable, but weak: add words, digits or symbols."];
  }

  function updateStrength(input) {
    const box = document.getElementById(input.dataset.strength);
    if (!box) return;
    const hint = box.querySelector(".hint");
    if (!hint.dataset.base) hint.dataset.base = hint.textContent;
    const [level, text] = strength(input.value, parseInt(box.dataset.min || "12", 10));
    box.dataset.level = String(level);
    hint.textContent = text || hint.dataset.base;
  }

  function checkNewPassword(form, min) {
    const pw = form.elements.password.value;
    if (Array.from(pw).length < min) return "The password must be at least " + min + " characters.";
    if (pw !== form.elements.confirm.value) return "The two passwords do not match.";
    return null;
  }

  // ----- forms -----

  // One host per line (commas separate too). A URL is reduced to its host,
  // with a note; every line that is not a host is listed, and nothing is sent.
  const HOST_RE = /^(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?(?::\d{1,5})?$/;
  const IPV6_RE = /^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

  function parseHosts(text) {
    const hosts = [];
    const bad = [];
    const notes = [];
    text.split(/\r?\n/).forEach((line, i) => {
      line.split(",").forEach((raw) => {
        const entry = raw.trim();
        if (!entry) return;
        let host = entry.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, "");
        const cut = host.search(/[/?#]/);
        if (cut >= 0) host = host.slice(0, cut);
        if (host.includes("@")) host = host.slice(host.lastIndexOf("@") + 1);
        if (HOST_RE.test(host) || IPV6_RE.test(host)) {
          if (host !== entry) notes.push(entry + " → " + host);
          hosts.push(host);
        } else {
          bad.push("line " + (i + 1) + ": “" + entry + "”");
        }
      });
    });
    if (bad.length) {
      throw new ApiError("Not saved: " + (bad.length === 1 ? "this line is" : "these lines are") +
        " not a host name (like api.example.com, *.example.com, 10.0.0.5 or db.internal:5432): " + bad.join("; ") + ".");
    }
    return { hosts, note: notes.length ? " Saved as host names only: " + notes.join(", ") + "." : "" };
  }

  function hostsFromText(text) {
    return parseHosts(text).hosts;
  }

  function localInputValue(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  const forms = {
    async setup(form) {
      const min = parseInt(document.getElementById("setup-strength").dataset.min, 10);
      const problem = checkNewPassword(form, min);
      if (problem) throw new ApiError(problem);
      await api("POST", "/api/admin/setup", { password: form.elements.password.value });
      reloadWith("Admin password set. Welcome to Airlock.", "/");
    },

    async login(form) {
      const password = form.elements.password.value;
      if (!password) throw new ApiError("Enter the admin password.");
      try {
        await api("POST", "/api/admin/login", { password });
      } catch (e) {
        form.elements.password.select();
        throw e;
      }
      location.assign(form.dataset.next || "/");
    },

    async password(form) {
      const min = parseInt(document.getElementById("new-strength").dataset.min, 10);
      const problem = checkNewPassword(form, min);
      if (problem) throw new ApiError(problem);
      await api("POST", "/api/admin/password", {
        current_password: form.elements.current.value,
        new_password: form.elements.password.value,
      });
      form.reset();
      updateStrength(form.elements.password);
      showFlash("Password changed.", false);
    },

    async export(form) {
      const min = parseInt(document.getElementById("export-strength").dataset.min, 10);
      const password = form.elements.password.value;
      const passphrase = form.elements.passphrase.value;
      if (!password) throw new ApiError("Enter the admin password.");
      if (Array.from(passphrase).length < min) throw new ApiError("The passphrase must be at least " + min + " characters.");
      if (passphrase !== form.elements.confirm.value) throw new ApiError("The two passphrases do not match.");
      const body = { password, passphrase, include_executions: form.elements.include_executions.checked };
      if ((form.querySelector("input[name=scope]:checked") || {}).value === "chosen") {
        body.profiles = Array.from(form.querySelectorAll("input[name=profiles]:checked")).map((c) => c.value);
        if (body.profiles.length === 0) throw new ApiError("Choose at least one profile, or export everything.");
      }
      const { blob, filename } = await download("/api/admin/export", body);
      form.elements.password.value = "";
      form.elements.passphrase.value = "";
      form.elements.confirm.value = "";
      updateStrength(form.elements.passphrase);
      saveBlob(blob, filename);
      showFlash("Export saved as " + filename + ". It holds every secret in it: keep it and its passphrase apart and safe.", false);
    },

    async "import-preview"(form) {
      const file = form.elements.file.files[0];
      if (!file) throw new ApiError("Choose the .airlock file to import.");
      if (file.size > parseInt(form.dataset.max, 10)) {
        throw new ApiError("The file is larger than the import limit of " + form.dataset.maxMib + " MiB (AIRLOCK_MAX_IMPORT_BYTES).");
      }
      const password = form.elements.password.value;
      const passphrase = form.elements.passphrase.value;
      if (!password) throw new ApiError("Enter the admin password.");
      if (!passphrase) throw new ApiError("Enter the file's passphrase.");
      const p = await api("POST", "/api/admin/import/preview", { file: await fileBase64(file), password, passphrase });
      form.elements.password.value = "";
      form.elements.passphrase.value = "";
      showImportPreview(p);
    },

    async "import-commit"(form) {
      const choice = (n) => (form.querySelector("input[name=" + n + "]:checked") || {}).value || "skip";
      const r = await api("POST", "/api/admin/import/commit", {
        token: form.elements.token.value,
        credentials: choice("credentials"),
        profiles: choice("profiles"),
      });
      form.elements.token.value = "";
      reloadWith("Import done. " + [
        importCounts("Credentials", r.credentials),
        importCounts("profiles", r.profiles),
        importCounts("history", r.executions),
      ].join("; ") + ".");
    },

    async "cred-create"(form) {
      const name = form.elements.name.value.trim();
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) {
        throw new ApiError("Use 1–64 letters, digits or _ for the name, not starting with a digit.");
      }
      const body = { name, description: form.elements.description.value.trim() };
      const value = form.elements.value.value;
      if (value) body.value = value;
      const hosts = hostsFromText(form.elements.bound_hosts ? form.elements.bound_hosts.value : "");
      if (hosts.length) body.bound_hosts = hosts;
      const db = dbLogin(form);
      if (db) body.database = db;
      form.elements.value.value = "";
      await api("POST", "/api/admin/credentials", body);
      reloadWith("Credential " + name + " added" + (value ? " with its value." : "; fill in its value when ready."));
    },

    async "cred-value"(form) {
      const name = form.elements.name.value;
      const multi = form.elements.multiline && form.elements.multiline.checked;
      const value = multi ? form.elements.value_lines.value : form.elements.value.value;
      if (!value) throw new ApiError("Enter the value.");
      form.elements.value.value = "";
      if (form.elements.value_lines) form.elements.value_lines.value = "";
      form.querySelector("[data-short-warning]").hidden = true;
      await api("PUT", "/api/admin/credentials/" + enc(name), { value });
      form.closest("dialog").close();
      reloadWith("Value of " + name + " saved. It will not be shown again.",
        location.pathname.startsWith("/ui/credentials") ? "/ui/credentials" : undefined);
    },

    async "cred-edit"(form) {
      const name = form.elements.name.value;
      const body = { description: form.elements.description.value.trim() };
      if (form.elements.mode) {
        body.mode = form.elements.mode.value;
        body.bound_hosts = hostsFromText(form.elements.bound_hosts.value);
        body.bound_methods = form.elements.bound_methods.value.split(",").map((m) => m.trim()).filter(Boolean);
        body.bound_header = form.elements.bound_header.value.trim();
        body.substitute_in_body = form.elements.substitute_in_body.checked;
        body.revoke_on_violation = form.elements.revoke_on_violation.checked;
      }
      if (form.elements.db_host) {
        const db = dbLogin(form);
        if (db) {
          body.database = db;
          body.mode = "sealed";
          body.bound_hosts = [];
        } else if (form.dataset.hadDb === "true") {
          body.database = null;
        }
      }
      await api("PUT", "/api/admin/credentials/" + enc(name), body);
      form.closest("dialog").close();
      const idle = body.mode === "plain" && body.bound_hosts.length > 0;
      reloadWith("Settings of " + name + " saved." + (idle
        ? " Its bound hosts are kept but do nothing while it is plain: the script gets the value itself. Choose sealed to use them."
        : ""));
    },

    async "profile-create"(form) {
      const credentials = Array.from(form.querySelectorAll("input[name=credentials]:checked")).map((c) => c.value);
      const p = await api("POST", "/api/admin/profiles", {
        description: form.elements.description.value.trim(),
        credentials,
      });
      reloadWith("Profile " + p.id + " created. Review its network access, then lock it to issue a key.", "/ui/profiles/" + enc(p.id));
    },

    async "profile-settings"(form) {
      const raw = form.elements.expires_at.value;
      let expires = null;
      if (raw) {
        const d = new Date(raw);
        if (isNaN(d)) throw new ApiError("The expiry date is not valid.");
        if (d.getTime() <= Date.now()) {
          const ok = await confirmDialog({
            title: "Expiry is in the past",
            text: "The profile's key will stop working at once. Save anyway?",
            ok: "Save",
          });
          if (!ok) return;
        }
        expires = d.toISOString();
      }
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), {
        description: form.elements.description.value.trim(),
        expires_at: expires,
      });
      reloadWith("Profile details saved.");
    },

    async "profile-hosts"(form) {
      const mode = (form.querySelector("input[name=mode]:checked") || {}).value;
      let hosts = [];
      let note = "";
      if (mode === "any") {
        hosts = null;
      } else if (mode === "list") {
        ({ hosts, note } = parseHosts(form.elements.hosts.value));
        if (hosts.length === 0) throw new ApiError("Add at least one host, or choose “No network”.");
      }
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), { allowed_hosts: hosts });
      reloadWith(mode === "any" ? "Network access is now unrestricted." : "Network access saved." + note);
    },

    async "execution-compare"(form) {
      const other = form.elements.with.value;
      const d = await api("GET", "/api/admin/executions/" + enc(form.dataset.execution) + "/diff?with=" + enc(other));
      renderComparison(form.parentElement.querySelector("[data-compare-result]"), d);
    },

    async "profile-record"(form) {
      const record = (form.querySelector("input[name=record]:checked") || {}).value || "off";
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), { record });
      reloadWith(record === "off" ? "Input records are off." : "Executions now record their inputs.");
    },

    async "profile-replay"(form) {
      const on = form.elements.replay_protection.checked;
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), { replay_protection: on });
      reloadWith(on ? "Replay protection is on: requests must be signed with a time and nonce." : "Replay protection is off: the script-only signature is accepted too.");
    },

    async "profile-approval"(form) {
      const approval = (form.querySelector("input[name=approval]:checked") || {}).value || "off";
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), { approval });
      reloadWith(approval === "off" ? "Script approval is off: signed scripts run at once." : "Script approval is on: executions wait in Approvals.");
    },

    async "approval-approve"(form) {
      const body = {};
      const el = form.elements;
      if (el.runs && el.runs.value.trim()) body.runs = Number(el.runs.value);
      if (el.until && el.until.value) {
        const d = new Date(el.until.value);
        if (isNaN(d)) throw new ApiError("The end date is not valid.");
        body.until = d.toISOString();
      }
      if (el.note.value.trim()) body.note = el.note.value.trim();
      await api("POST", "/api/admin/approvals/" + enc(form.dataset.id) + "/approve", body);
      reloadWith("Approved: the execution is queued.");
    },

    async "approval-deny"(form) {
      const reason = form.elements.reason.value.trim();
      if (!reason) throw new ApiError("Give a reason: the agent reads it.");
      await api("POST", "/api/admin/approvals/" + enc(form.dataset.id) + "/deny", { reason });
      reloadWith("Denied: the execution will not run.");
    },

    async "request-reject"(form) {
      const reason = form.elements.reason.value.trim();
      if (!reason) throw new ApiError("Give a reason: the agent reads it.");
      await api("POST", "/api/admin/requests/" + enc(form.dataset.kind) + "/" + enc(form.dataset.subject) + "/reject", { reason });
      reloadWith("Rejected: the agent can read your reason.");
    },

    async "webhook-add"(form) {
      const el = form.elements;
      const events = Array.from(form.querySelectorAll("input[name=events]:checked")).map((i) => i.value);
      await api("POST", "/api/admin/notifications/webhooks", {
        url: el.url.value.trim(),
        format: el.format.value,
        events,
        secret: el.secret.value,
      });
      reloadWith("Webhook added. Send a test to check it.");
    },

    async "email-set"(form) {
      const el = form.elements;
      const body = {
        host: el.host.value.trim(),
        port: Number(el.port.value),
        tls: el.tls.value,
        from: el.from.value.trim(),
        to: el.to.value.split(",").map((s) => s.trim()).filter((s) => s),
        events: Array.from(form.querySelectorAll("input[name=events]:checked")).map((i) => i.value),
      };
      if (el.username.value.trim()) body.username = el.username.value.trim();
      if (el.password.value) body.password = el.password.value;
      await api("PUT", "/api/admin/notifications/email", body);
      reloadWith("E-mail settings saved. Send a test to check them.");
    },

    async "profile-add-cred"(form) {
      const name = form.elements.name.value;
      await api("POST", "/api/admin/profiles/" + enc(profileId()) + "/credentials", { credentials: [name] });
      reloadWith(name + " added to the profile.");
    },
  };

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form[data-form]");
    if (!form) return;
    ev.preventDefault();
    const handler = forms[form.dataset.form];
    if (!handler) return;
    const button = form.querySelector("button[type=submit]");
    formError(form, "");
    if (button) { button.disabled = true; button.classList.add("busy"); }
    try {
      await handler(form);
    } catch (e) {
      if (e.code === "not_authenticated") {
        const kept = saveDraft(form);
        formError(form, e.message + (kept
          ? " What you typed here is kept (secret values excepted) and comes back after you log in."
          : form.querySelector("[data-value-input]") ? " Values are never kept: enter it again after you log in." : ""), true);
      } else {
        formError(form, e.message || String(e));
      }
    } finally {
      if (button) { button.disabled = false; button.classList.remove("busy"); }
    }
  });

  // ----- actions -----

  const actions = {
    async logout() {
      try { await api("POST", "/api/admin/logout"); } catch (e) { /* already logged out */ }
      location.assign("/ui/login");
    },

    async "logout-others"() {
      const r = await api("POST", "/api/admin/sessions/logout-others", {});
      reloadWith(r.ended === 1 ? "1 other session ended." : `${r.ended} other sessions ended.`);
    },

    fill(btn) { openValueDialog(btn.dataset.name, btn.dataset.desc); },

    "cred-edit"(btn) { openDescDialog(btn.dataset.name, btn.dataset.desc, btn.dataset); },

    async "cred-delete"(btn) {
      const name = btn.dataset.name;
      const ok = await confirmDialog({
        title: "Delete " + name + "?",
        text: "The credential and its value are deleted for good. Scripts that read it will fail.",
        ok: "Delete",
      });
      if (!ok) return;
      await api("DELETE", "/api/admin/credentials/" + enc(name));
      reloadWith("Credential " + name + " deleted.");
    },

    async "webhook-delete"(btn) {
      await api("DELETE", "/api/admin/notifications/webhooks/" + enc(btn.dataset.id));
      reloadWith("Webhook deleted.");
    },

    async "email-clear"() {
      await api("DELETE", "/api/admin/notifications/email");
      reloadWith("E-mail notifications stopped.");
    },

    async "webhook-test"() {
      await api("POST", "/api/admin/notifications/test", {});
      reloadWith("Test queued: its delivery shows below in a moment.");
    },

    async "audit-verify"() {
      const v = await api("POST", "/api/admin/audit/verify", {});
      reloadWith(v.state === "ok" ? "The chain checks out: " + v.events + " events." : "The audit log does not check out at event " + v.broken_at + ".");
    },

    async "request-accept"(btn) {
      await api("POST", "/api/admin/requests/" + enc(btn.dataset.kind) + "/" + enc(btn.dataset.subject) + "/accept", {});
      reloadWith(btn.dataset.kind === "packages" ? "Accepted: the packages are being installed." : "Accepted. Fill in the values and lock it when ready.");
    },

    async "approval-withdraw"(btn) {
      await api("POST", "/api/admin/approvals/" + enc(btn.dataset.id) + "/withdraw", {});
      reloadWith("Approval withdrawn: the script asks again next time.");
    },

    async "package-remove"(btn) {
      const name = btn.dataset.name;
      const ok = await confirmDialog({
        title: "Remove " + name + "?",
        text: "The package environment is rebuilt without it. Scripts that import it will fail.",
        ok: "Remove",
      });
      if (!ok) return;
      await api("DELETE", "/api/admin/packages/" + enc(name));
      reloadWith("Package " + name + " removed; the environment is being rebuilt.");
    },

    async "profile-remove-cred"(btn) {
      const name = btn.dataset.name;
      await api("DELETE", "/api/admin/profiles/" + enc(profileId()) + "/credentials", { credentials: [name] });
      reloadWith(name + " removed from the profile.");
    },

    async "profile-lock"() {
      const ok = await confirmDialog({
        title: "Lock this profile?",
        text: "Its credentials can no longer change after locking. You will see the agent's key once, right after this.",
        ok: "Lock and show key",
        danger: false,
      });
      if (!ok) return;
      const p = await api("POST", "/api/admin/profiles/" + enc(profileId()) + "/lock");
      showKey(p.key, "Profile locked. The agent can now run scripts with its key.");
    },

    async "profile-regen"() {
      const ok = await confirmDialog({
        title: "Regenerate the key?",
        text: "The current key stops working immediately. Agents using it must be given the new one.",
        ok: "Regenerate",
      });
      if (!ok) return;
      const p = await api("POST", "/api/admin/profiles/" + enc(profileId()) + "/regenerate-key");
      showKey(p.key, "New key issued; the old one no longer works.");
    },

    async "profile-revoke"() {
      const ok = await confirmDialog({
        title: "Revoke this profile?",
        text: "Its key stops working at once and the profile can never be used or changed again. This cannot be undone.",
        ok: "Revoke",
      });
      if (!ok) return;
      await api("POST", "/api/admin/profiles/" + enc(profileId()) + "/revoke");
      reloadWith("Profile revoked. Its key no longer works.");
    },

    async "profile-delete"() {
      const ok = await confirmDialog({
        title: "Delete this profile?",
        text: "The profile is removed. Its credentials stay.",
        ok: "Delete",
      });
      if (!ok) return;
      await api("DELETE", "/api/admin/profiles/" + enc(profileId()));
      reloadWith("Profile " + profileId() + " deleted.", "/ui/profiles");
    },

    async "profile-clear-expiry"() {
      await api("PUT", "/api/admin/profiles/" + enc(profileId()), { expires_at: null });
      reloadWith("Expiry removed: the profile no longer expires.");
    },

    async "execution-replay"(btn) {
      const r = await api("POST", "/api/admin/executions/" + enc(btn.dataset.execution) + "/replay", {});
      const from = r.answers === "recorded" ? " with its recorded answers" : " against the live network";
      reloadWith("Replay of " + r.replay_of + from + " started: compare the two here.", "/ui/executions/" + enc(r.execution_id));
    },

    "copy-key"() { return copyKey(); },

    "nav-toggle"(btn) {
      const open = btn.closest(".topbar").classList.toggle("nav-open");
      btn.setAttribute("aria-expanded", open ? "true" : "false");
    },

    "import-cancel"() {
      const form = document.querySelector("form[data-form=import-commit]");
      form.elements.token.value = "";
      form.hidden = true;
      const upload = document.querySelector("form[data-form=import-preview]");
      upload.reset();
      upload.hidden = false;
    },
  };

  document.addEventListener("click", async (ev) => {
    const closer = ev.target.closest("[data-close-dialog]");
    if (closer) { closer.closest("dialog").close(); return; }
    const btn = ev.target.closest("[data-action]");
    if (!btn || btn.disabled) return;
    const action = actions[btn.dataset.action];
    if (!action) return;
    ev.preventDefault();
    btn.disabled = true;
    try {
      await action(btn);
    } catch (e) {
      showFlash(e.message || String(e), true);
    } finally {
      btn.disabled = false;
      // A dialog closed while the button was disabled could not give it its
      // focus back: do it now, so a keyboard user stays where they were.
      const a = document.activeElement;
      const lost = !a || a === document.body || Boolean(a.closest("dialog:not([open])"));
      if (lost && btn.isConnected && !document.querySelector("dialog[open]")) btn.focus();
    }
  });

  // ----- live hints -----

  document.addEventListener("input", (ev) => {
    const t = ev.target;
    if (t.matches("[data-value-input]")) {
      const warn = t.closest("form").querySelector("[data-short-warning]");
      const len = Array.from(t.value).length;
      if (warn) warn.hidden = !(len > 0 && len < 8);
    }
    if (t.matches("[data-strength]")) updateStrength(t);
  });

  document.addEventListener("change", (ev) => {
    const t = ev.target;
    if (t.matches("[data-multiline]")) {
      const form = t.closest("form");
      syncMultiline(form);
      (t.checked ? form.elements.value_lines : form.elements.value).focus();
    }
    if (t.matches("form[data-form=export] input[name=scope]")) {
      t.closest("form").querySelector("[data-export-profiles]").hidden = t.value !== "chosen";
    }
    if (t.matches("form[data-form=profile-hosts] input[name=mode]")) {
      const form = t.closest("form");
      form.querySelector("[data-hosts-list]").hidden = t.value !== "list";
      form.querySelector("[data-hosts-warning]").hidden = t.value !== "any";
      if (t.value === "list") form.elements.hosts.focus();
    }
  });

  // ----- on load -----

  function localizeTimes() {
    const fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
    document.querySelectorAll("time[datetime]").forEach((el) => {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.title = el.textContent;
      el.textContent = fmt.format(d);
    });
    document.querySelectorAll("input[data-iso]").forEach((el) => {
      if (el.dataset.iso) el.value = localInputValue(el.dataset.iso);
    });
  }

  // An execution page that is still pending, running or waiting for the LLM
  // reloads itself every two seconds (keeping the scroll position) until the
  // execution ends; it stops while a dialog is open or the tab is hidden.
  function followLiveExecution() {
    if (!document.body.dataset.live) return;
    setInterval(() => {
      if (document.hidden || document.querySelector("dialog[open]")) return;
      location.reload();
    }, 2000);
  }

  function init() {
    popFlash();
    restoreDraft();
    localizeTimes();
    followLiveExecution();
    warnBeforeSessionEnds();
    const fill = document.body.dataset.fill;
    if (fill) {
      const btn = Array.from(document.querySelectorAll("[data-action=fill]")).find((b) => b.dataset.name === fill);
      if (btn) {
        const row = btn.closest("tr");
        if (row) row.scrollIntoView({ block: "center" });
        openValueDialog(btn.dataset.name, btn.dataset.desc);
      }
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
