// Browser tests of what a walk through every operator flow found (feedback
// out of view, a key lost to Escape, focus dropped after dialogs, hosts saved
// wrongly, pages wider than a phone, ids before names, accessibility), each
// checked the way the operator meets it. One server, one browser, steps in
// order; data is made through the admin API with the browser's session.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { createServer } from "node:http";
import { spawn } from "node:child_process";
import { createServer as createNetServer } from "node:net";
import { createHmac } from "node:crypto";
import * as h from "./harness.mjs";

const LONG = "x".repeat(1000);
const SECRET = "wt_SecretValue_0123456789abcdefXYZ";
const PHONE = { width: 390, height: 844 };

let airlock;
let base;
let context;
let page;
let pageErrors;
const state = {};

async function admin(method, path, body) {
  const headers = await h.adminHeaders(context, base);
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function sandboxReady() {
  const health = await (await fetch(base + "/health")).json();
  return Boolean(health.sandbox && health.sandbox.ready);
}

/** A profile with `creds`, network `hosts`, locked; returns { id, key }. */
async function lockedProfile(description, creds, hosts) {
  const p = await admin("POST", "/api/admin/profiles", { description, credentials: creds });
  await admin("PUT", `/api/admin/profiles/${p.id}`, { allowed_hosts: hosts });
  const locked = await admin("POST", `/api/admin/profiles/${p.id}/lock`, {});
  return { id: p.id, key: locked.key };
}

let links;

before(async () => {
  // Package installs come from a local directory of wheels, not an index.
  links = h.sandboxVisibleDir("airlock-ui-links-");
  h.makeWheel(links, "tinypkg", "1.0", { "tinypkg/__init__.py": "VALUE = 42\n" });
  airlock = await h.startAirlock("walkthrough", {
    AIRLOCK_PIP_INDEX_URL: "none",
    AIRLOCK_PIP_FIND_LINKS: links,
    AIRLOCK_PIP_INSTALLER: "pip",
  }, "/var/tmp");
  base = airlock.base;
  ({ context, page, pageErrors } = await h.launchBrowser(airlock.tmp, base));
  const r = await fetch(base + "/api/admin/setup", {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: base },
    body: JSON.stringify({ password: h.PASSWORD }),
  });
  assert.equal(r.status, 200, await r.text());
  await page.goto(base + "/ui/login");
  await page.fill("input[name=password]", h.PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/");
  await admin("POST", "/api/admin/credentials", { name: "API_TOKEN", description: "the billing API", value: SECRET });
  await admin("POST", "/api/admin/credentials", { name: "LONG_DESC", description: LONG });
  const p = await admin("POST", "/api/admin/profiles", { description: "Billing report bot", credentials: ["API_TOKEN"] });
  state.profile = p.id;
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (airlock) await airlock.stop();
  if (links) rmSync(links, { recursive: true, force: true });
});

test("the notice of a save is in view where the operator acted", async () => {
  await page.setViewportSize({ width: 1280, height: 520 });
  await page.goto(`${base}/ui/profiles/${state.profile}`);
  const form = page.locator("form[data-form=profile-hosts]");
  await form.locator("input[value=list]").check();
  await form.locator("textarea[name=hosts]").fill("api.example.com");
  await form.locator("button[type=submit]").scrollIntoViewIfNeeded();
  assert.ok(await page.evaluate(() => window.scrollY) > 0, "the form is below the fold");
  await form.locator("button[type=submit]").click();
  await h.expectFlash(page, /Network access saved/);
  const box = await page.locator("#flash").boundingBox();
  assert.ok(box && box.y >= 0 && box.y + box.height <= 520, `notice out of view: ${JSON.stringify(box)}`);
  // It does not stand in the way of the next click.
  assert.equal(await page.locator("#flash").evaluate((el) => getComputedStyle(el).pointerEvents), "none");
  await page.setViewportSize({ width: 1280, height: 900 });
});

test("allowed hosts: every bad line is listed and nothing is saved; URLs become hosts", async () => {
  await page.goto(`${base}/ui/profiles/${state.profile}`);
  const form = page.locator("form[data-form=profile-hosts]");
  await form.locator("textarea[name=hosts]").fill("api.example.com\nbad host\nhttps://reports.example.org/v1/export?x=1\nalso bad!");
  await form.locator("button[type=submit]").click();
  const err = form.locator(".form-error");
  await err.waitFor({ state: "visible" });
  const text = await err.textContent();
  assert.match(text, /line 2: “bad host”/);
  assert.match(text, /line 4: “also bad!”/);
  assert.match(text, /Not saved/);
  const p = await admin("GET", `/api/admin/profiles/${state.profile}`);
  assert.deepEqual(p.allowed_hosts, ["api.example.com"], "nothing was saved");

  await form.locator("textarea[name=hosts]").fill("api.example.com\nhttps://reports.example.org/v1/export?x=1");
  await form.locator("button[type=submit]").click();
  const note = await h.expectFlash(page, /Network access saved/);
  assert.match(note, /https:\/\/reports\.example\.org\/v1\/export\?x=1 → reports\.example\.org/);
  const saved = await admin("GET", `/api/admin/profiles/${state.profile}`);
  assert.deepEqual(saved.allowed_hosts, ["api.example.com", "reports.example.org"]);
});

test("focus returns to the button that opened a confirmation", async () => {
  await page.goto(base + "/ui/credentials");
  const del = page.locator("#cred-LONG_DESC [data-action=cred-delete]");
  await del.focus();
  await page.keyboard.press("Enter");
  const confirm = page.locator("#confirm-dialog");
  await confirm.waitFor({ state: "visible" });
  await page.keyboard.press("Escape");
  await confirm.waitFor({ state: "hidden" });
  await page.waitForFunction(() => document.activeElement && document.activeElement.dataset.action === "cred-delete");
  assert.equal(await page.evaluate(() => document.activeElement.closest("tr").id), "cred-LONG_DESC");
});

test("Escape on the one-time key asks first; the key comes with ready-to-paste snippets", async () => {
  const p = await admin("POST", "/api/admin/profiles", { description: "Key dialog check", credentials: ["API_TOKEN"] });
  await page.goto(`${base}/ui/profiles/${p.id}`);
  await page.locator("[data-action=profile-lock]").click();
  await page.locator("#confirm-dialog [data-confirm-ok]").click();
  const dlg = page.locator("#key-dialog");
  await dlg.waitFor({ state: "visible" });
  const key = await dlg.locator("[data-key-output]").inputValue();
  assert.match(key, /^ark_[a-z0-9]+:[A-Za-z0-9]+$/);

  await page.keyboard.press("Escape");
  const confirm = page.locator("#confirm-dialog");
  await confirm.waitFor({ state: "visible" });
  assert.match(await confirm.textContent(), /shown only this once/);
  await confirm.locator("[data-confirm-cancel]").click();
  assert.ok(await dlg.isVisible(), "the key dialog stays open");
  assert.equal(await dlg.locator("[data-key-output]").inputValue(), key);

  await dlg.locator("summary", { hasText: "Ready to paste" }).click();
  const shell = await dlg.locator("[data-key-snippet=shell]").inputValue();
  assert.match(shell, new RegExp(`export AIRLOCK_KEY='${key}'`));
  assert.match(shell, /airlock exec script\.py/);
  const mcp = JSON.parse(await dlg.locator("[data-key-snippet=mcp]").inputValue());
  assert.equal(mcp.mcpServers.airlock.url, base + "/mcp");
  assert.equal(mcp.mcpServers.airlock.headers.Authorization, "Bearer " + key);
  const stdio = JSON.parse(await dlg.locator("[data-key-snippet=stdio]").inputValue());
  assert.equal(stdio.mcpServers.airlock.env.AIRLOCK_KEY, key);
  await h.shot(page, "walkthrough-key-dialog");

  await page.keyboard.press("Escape");
  await confirm.waitFor({ state: "visible" });
  await confirm.locator("[data-confirm-ok]").click();
  await h.expectFlash(page, /Profile locked/);
  assert.ok(!(await page.content()).includes(key.split(":")[1]), "the secret is gone from the page");
  state.key = key;
  state.keyProfile = p.id;
});

test("names before ids: profiles are shown by their description", async () => {
  await page.goto(base + "/ui/profiles");
  const link = page.locator(`a[href="/ui/profiles/${state.profile}"]`).first();
  assert.equal((await link.textContent()).trim(), "Billing report bot");
  await page.goto(`${base}/ui/profiles/${state.profile}`);
  assert.match(await page.locator("h1").textContent(), /^Billing report bot/);
  assert.match(await page.title(), /^Billing report bot/);
});

test("every page fits a phone, with the navigation in a menu", async () => {
  await admin("PUT", `/api/admin/profiles/${state.profile}`, { description: LONG });
  await page.setViewportSize(PHONE);
  const pages = ["/", "/ui/credentials", "/ui/profiles", `/ui/profiles/${state.profile}`, "/ui/executions", "/ui/requests", "/ui/approvals", "/ui/packages", "/ui/audit", "/ui/settings"];
  for (const path of pages) {
    await page.goto(base + path);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `${path} is ${width} px wide on a ${PHONE.width} px phone`);
  }
  await h.shot(page, "walkthrough-phone-profile");
  // The navigation is one button away.
  await page.goto(base + "/ui/credentials");
  assert.ok(await page.locator("nav.mainnav").isHidden());
  const menu = page.locator("[data-action=nav-toggle]");
  assert.equal(await menu.getAttribute("aria-expanded"), "false");
  await menu.click();
  assert.equal(await menu.getAttribute("aria-expanded"), "true");
  await page.locator("nav.mainnav >> text=Executions").click();
  await page.waitForURL(base + "/ui/executions");
  await page.setViewportSize({ width: 1280, height: 900 });
  await admin("PUT", `/api/admin/profiles/${state.profile}`, { description: "Billing report bot" });
});

test("the value dialog keeps the line breaks of a multi-line value", async (t) => {
  await admin("POST", "/api/admin/credentials", { name: "PEM_KEY", description: "a key file" });
  const p = await admin("POST", "/api/admin/profiles", { description: "PEM reader", credentials: ["PEM_KEY"] });
  await page.goto(`${base}/ui/profiles/${p.id}`);
  await page.locator("li[data-cred=PEM_KEY] [data-action=fill]").click();
  const dlg = page.locator("#value-dialog");
  await dlg.waitFor({ state: "visible" });
  await dlg.locator("[data-multiline]").check();
  await dlg.locator("textarea[name=value_lines]").fill("-----BEGIN KEY-----\nAAAA-line-two-BBBB\n-----END KEY-----");
  await dlg.locator("button[type=submit]").click();
  await h.expectFlash(page, /Value of PEM_KEY saved/);
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available; the value's lines are checked by running a script");
    return;
  }
  const locked = await admin("POST", `/api/admin/profiles/${p.id}/lock`, {});
  const v = await h.execute(base, locked.key, "v = settings.get('PEM_KEY')\nset_result({'lines': len(v.splitlines())})\n");
  assert.equal(v.status, "completed", JSON.stringify(v));
  assert.deepEqual(v.result, { lines: 3 });
});

test("an execution page follows the run: waits for the LLM, then shows the end and both durations", async (t) => {
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available on this machine; no execution to follow");
    return;
  }
  const script = "import time\nanswer = llm.complete('two words please')\ntime.sleep(0.05)\nset_result({'answer': answer})\n";
  const v = await h.execute(base, state.key, script, ["awaiting_llm"]);
  await page.goto(`${base}/ui/executions/${v.execution_id}`);
  assert.match(await page.locator("h1 .badge").textContent(), /awaiting_llm/);
  await page.waitForTimeout(1500);
  const [keyId] = state.key.split(":");
  const r = await fetch(`${base}/executions/${v.execution_id}/respond`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyId}` },
    body: JSON.stringify({ request_id: v.llm_request.request_id, response: "hello there" }),
  });
  assert.equal(r.status, 200, await r.text());
  // No reload by the test: the page refreshes itself.
  await page.locator("h1 .badge", { hasText: "completed" }).waitFor({ timeout: 30_000 });
  const facts = await page.locator(".kv").textContent();
  assert.match(facts, /Running time/);
  assert.match(facts, /Waiting for the LLM\s*\d/);
  assert.ok(!(await page.locator("[data-live-note]").count()), "a finished execution no longer refreshes");
});

// The same mechanism marks every failure to reach an allowed destination (a
// name that does not resolve, a refused or timed-out connection; the egress
// crate's unit test covers the DNS wording). Here: a closed port on loopback,
// so the test sends nothing off the machine, not even a DNS query.
test("a failed connection to an allowed host is logged as failed, not refused", async (t) => {
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available on this machine; no execution to log");
    return;
  }
  const { key } = await lockedProfile("Unreachable check", ["API_TOKEN"], ["127.0.0.1:1"]);
  const script = [
    "import urllib.request",
    "for url in ['http://127.0.0.1:1/x', 'http://127.0.0.2:1/']:",
    "    try:",
    "        urllib.request.urlopen(url, timeout=10)",
    "    except Exception as e:",
    "        print(type(e).__name__)",
  ].join("\n") + "\n";
  const v = await h.execute(base, key, script);
  assert.equal(v.status, "completed", JSON.stringify(v));
  await page.goto(`${base}/ui/executions/${v.execution_id}`);
  const rows = page.locator("section.card", { hasText: "Network" }).locator("tbody tr");
  await rows.first().waitFor();
  const target = (t) => rows.filter({ has: page.locator("td:nth-child(2)", { hasText: new RegExp(`^${t.replace(/\./g, "\\.")}$`) }) });
  const failed = target("127.0.0.1:1");
  const other = target("127.0.0.2:1");
  // The outcome badge: the OS's "Connection refused" stays in the reason.
  assert.equal((await failed.locator(".badge").textContent()).trim(), "failed");
  assert.match(await failed.textContent(), /allowed by 127\.0\.0\.1:1.*but connecting to 127\.0\.0\.1:1/);
  assert.equal((await other.locator(".badge").textContent()).trim(), "refused");
});

test("replay protection: on for a new profile, switched off and on again in the profile page", async () => {
  const { id } = await lockedProfile("Signatures check", ["API_TOKEN"], []);
  await page.goto(`${base}/ui/profiles/${id}`);
  const form = page.locator("form[data-form=profile-replay]");
  const box = form.locator("input[name=replay_protection]");
  assert.equal(await box.isChecked(), true);
  await box.uncheck();
  await form.locator("button[type=submit]").click();
  await page.locator("text=Replay protection is off").waitFor();
  assert.equal((await admin("GET", `/api/admin/profiles/${id}`)).replay_protection, false);
  assert.equal(await page.locator("form[data-form=profile-replay] input[name=replay_protection]").isChecked(), false);
  await page.locator("form[data-form=profile-replay] input[name=replay_protection]").check();
  await page.locator("form[data-form=profile-replay] button[type=submit]").click();
  await page.locator("text=Replay protection is on").waitFor();
  assert.equal((await admin("GET", `/api/admin/profiles/${id}`)).replay_protection, true);
});

test("script approval: switched on in the profile page; approved and denied in the Approvals pages", async (t) => {
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available on this machine; nothing to approve");
    return;
  }
  const { id, key } = await lockedProfile("Approval check", ["API_TOKEN"], []);
  await page.goto(`${base}/ui/profiles/${id}`);
  const form = page.locator("form[data-form=profile-approval]");
  await form.locator("input[value=first_run]").check();
  await form.locator("button[type=submit]").click();
  await page.locator("text=Script approval is on").waitFor();
  assert.equal((await admin("GET", `/api/admin/profiles/${id}`)).approval, "first_run");

  // The agent's execution waits; the approver finds it in the list and approves it.
  const script = "total = 3\nset_result(total)\n";
  const waiting = await h.execute(base, key, script, ["awaiting_approval"]);
  assert.match(waiting.approval_url, new RegExp(`/ui/approvals/${waiting.execution_id}$`));
  await page.goto(`${base}/ui/approvals`);
  await page.locator(`table[data-approvals=pending] a:has-text("${waiting.execution_id}")`).click();
  await page.waitForURL(`${base}/ui/approvals/${waiting.execution_id}`);
  assert.match(await page.locator("[data-closest]").textContent(), /No script of this profile was approved before/);
  assert.match(await page.locator("pre.code-script").textContent(), /set_result\(total\)/);
  const approve = page.locator("form[data-form=approval-approve]");
  await approve.locator("input[name=runs]").fill("2");
  await approve.locator("button[type=submit]").click();
  await h.expectFlash(page, "Approved: the execution is queued.");
  assert.equal((await page.locator("[data-approval-status]").textContent()).trim(), "approved");
  assert.match(await page.locator("[data-approval-grant]").textContent(), /1 further run until withdrawn/);
  const done = await h.execute(base, key, script);
  assert.equal(done.status, "completed", JSON.stringify(done));

  // A changed script asks again; the page shows the change; the approver denies it.
  const changed = await h.execute(base, key, "total = 4\nset_result(total)\n", ["awaiting_approval"]);
  await page.goto(`${base}/ui/approvals/${changed.execution_id}`);
  const diff = await page.locator("[data-diff]").textContent();
  assert.match(diff, /-total = 3/);
  assert.match(diff, /\+total = 4/);
  const deny = page.locator("form[data-form=approval-deny]");
  await deny.locator("button[type=submit]").click();
  await deny.locator(".form-error", { hasText: "Give a reason" }).waitFor();
  await deny.locator("input[name=reason]").fill("totals are fixed at 3");
  await deny.locator("button[type=submit]").click();
  await h.expectFlash(page, "Denied: the execution will not run.");
  const ended = await (await fetch(`${base}/executions/${changed.execution_id}`, { headers: { Authorization: `Bearer ${key.split(":")[0]}` } })).json();
  assert.equal(ended.status, "denied");
  assert.match(ended.error, /totals are fixed at 3/);
  await admin("PUT", `/api/admin/profiles/${id}`, { approval: "off" });
});

test("input records: switched on in the profile page; two runs compared in the execution page", async (t) => {
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available on this machine; nothing to compare");
    return;
  }
  const { id, key } = await lockedProfile("Records check", ["API_TOKEN"], []);
  await page.goto(`${base}/ui/profiles/${id}`);
  const form = page.locator("form[data-form=profile-record]");
  await form.locator("input[value=hashes]").check();
  await form.locator("button[type=submit]").click();
  await page.locator("text=Executions now record their inputs.").waitFor();
  assert.equal((await admin("GET", `/api/admin/profiles/${id}`)).record, "hashes");
  const script = (n) => `import airlock\nprint('total', ${n})\nset_result({'total': ${n}, 'day': airlock.now().year > 2000})\n`;
  const first = await h.execute(base, key, script(3));
  const second = await h.execute(base, key, script(4));
  assert.equal(second.status, "completed", JSON.stringify(second));
  await page.goto(`${base}/ui/executions/${second.execution_id}`);
  assert.match(await page.locator("section.card", { has: page.locator("h2", { hasText: /^Inputs$/ }) }).textContent(), /Python\s*3\./);
  const compare = page.locator("form[data-form=execution-compare]");
  await compare.locator("select").selectOption(first.execution_id);
  await compare.locator("button[type=submit]").click();
  const result = page.locator("[data-compare-result]");
  await result.locator("li").first().waitFor();
  const text = await result.textContent();
  assert.match(text, /The script changed\./);
  assert.match(text, /Result \/total: 4 → 3/);
  assert.match(text, /Stdout diff/);
  const scriptDiff = await result.locator("pre").first().textContent();
  assert.match(scriptDiff, /^-print\('total', 4\)$/m);
  assert.match(scriptDiff, /^\+print\('total', 3\)$/m);
  // Replay: a new execution of the same script with the recorded clock.
  await page.locator("button[data-action=execution-replay]").click();
  await page.waitForURL((u) => /\/ui\/executions\/exec_/.test(u.pathname) && !u.pathname.endsWith(second.execution_id));
  await page.locator(`text=Replay of ${second.execution_id} against the live network started`).waitFor();
  const replayId = new URL(page.url()).pathname.split("/").pop();
  let replayed;
  for (let i = 0; i < 100; i++) {
    replayed = await admin("GET", `/api/admin/executions/${replayId}`);
    if (replayed.status === "completed") break;
    await page.waitForTimeout(100);
  }
  assert.equal(replayed.status, "completed", JSON.stringify(replayed));
  assert.equal(replayed.inputs.replay_of, second.execution_id);
  const original = await admin("GET", `/api/admin/executions/${second.execution_id}`);
  assert.equal(replayed.inputs.now, original.inputs.now);
  // Full records: the answers are kept, and a replay serves them.
  await page.goto(`${base}/ui/profiles/${id}`);
  await form.locator("input[value=full]").check();
  await form.locator("button[type=submit]").click();
  await page.locator("text=Executions now record their inputs.").waitFor();
  assert.equal((await admin("GET", `/api/admin/profiles/${id}`)).record, "full");
  const third = await h.execute(base, key, script(5));
  assert.equal(third.status, "completed", JSON.stringify(third));
  await page.goto(`${base}/ui/executions/${third.execution_id}`);
  const inputs = await page.locator("section.card", { has: page.locator("h2", { hasText: /^Inputs$/ }) }).textContent();
  assert.match(inputs, /Answers kept\s*0 \(record: full\)/);
  assert.match(inputs, /serving the recorded answers instead of the network/);
  await page.locator("button[data-action=execution-replay]").click();
  await page.locator(`text=Replay of ${third.execution_id} with its recorded answers started`).waitFor();
});

test("agent requests: a slot rejected with a reason the agent reads, a profile accepted, in the Requests page", async () => {
  const agentPost = async (path, body) => {
    const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    assert.equal(r.status, 201, await r.clone().text());
    return r.json();
  };
  await agentPost("/credentials", { credentials: [{ name: "WAREHOUSE_PW", description: "the sales warehouse" }], message: "for the quarterly numbers" });
  const p = await agentPost("/profiles", { description: "Quarterly numbers", credentials: ["API_TOKEN"], message: "reads invoices" });

  // The overview lists both; the Requests page decides them.
  await page.goto(base + "/");
  await page.locator('[data-request="slot:WAREHOUSE_PW"]', { hasText: "for the quarterly numbers" }).waitFor();
  await page.locator(`[data-request="profile:${p.id}"]`).waitFor();
  await page.goto(base + "/ui/requests");
  const slot = page.locator('.request-item[data-subject="WAREHOUSE_PW"]');
  assert.match(await slot.textContent(), /for the quarterly numbers/);
  const reject = slot.locator("form[data-form=request-reject]");
  await reject.locator("button[type=submit]").click();
  await reject.locator(".form-error", { hasText: "Give a reason" }).waitFor();
  await reject.locator("input[name=reason]").fill("use the read-only replica");
  await reject.locator("button[type=submit]").click();
  await h.expectFlash(page, "Rejected: the agent can read your reason.");
  const creds = await (await fetch(base + "/credentials")).json();
  const asked = creds.credentials.find((c) => c.name === "WAREHOUSE_PW");
  assert.equal(asked.request.status, "rejected");
  assert.equal(asked.request.reason, "use the read-only replica");
  await page.locator("table[data-requests=decided] tr", { hasText: "use the read-only replica" }).waitFor();

  await page.locator(`.request-item[data-subject="${p.id}"] [data-action=request-accept]`).click();
  await h.expectFlash(page, "Accepted.");
  const profile = await (await fetch(`${base}/profiles/${p.id}`)).json();
  assert.equal(profile.request.status, "accepted");
  assert.equal(await page.locator(".request-item").count(), 0);
  await page.goto(`${base}/ui/profiles/${p.id}`);
  assert.match(await page.locator("[data-profile-request=accepted]").textContent(), /reads invoices/);
});

test("audit log: the operator's changes are listed, filtered, and the chain is checked on demand", async () => {
  await admin("PUT", "/api/admin/credentials/API_TOKEN", { description: "the billing API (audited)" });
  await page.goto(base + "/ui/audit");
  const table = page.locator("table[data-audit=events]");
  await table.locator("tr", { hasText: "PUT /api/admin/credentials/{name}" }).first().waitFor();
  assert.match(await table.textContent(), /\/api\/admin\/credentials\/API_TOKEN/);
  assert.doesNotMatch(await page.content(), new RegExp(SECRET));
  await page.locator("[data-action=audit-verify]").click();
  await h.expectFlash(page, "The chain checks out");
  await page.locator("[data-audit-state=ok]").waitFor();
  await page.fill("input[name=action]", "POST /api/admin/setup");
  await page.locator("form.filters button[type=submit]").click();
  await page.waitForURL(/action=POST/);
  const rows = await table.locator("tbody tr").allTextContents();
  assert.ok(rows.length >= 1 && rows.every((r) => r.includes("POST /api/admin/setup")), rows.join("\n"));
});

test("no serious or critical accessibility violation on any page, desktop and phone", async () => {
  const pages = ["/", "/ui/credentials", "/ui/profiles", `/ui/profiles/${state.profile}`, "/ui/executions", "/ui/requests", "/ui/approvals", "/ui/packages", "/ui/audit", "/ui/settings"];
  const execs = await admin("GET", "/api/admin/executions");
  const first = (execs.executions || [])[0];
  if (first) pages.push(`/ui/executions/${first.execution_id}`);
  const approvals = await admin("GET", "/api/admin/approvals?status=all");
  for (const a of (approvals.approvals || []).slice(0, 2)) pages.push(`/ui/approvals/${a.execution_id}`);
  for (const viewport of [{ width: 1280, height: 900 }, PHONE]) {
    await page.setViewportSize(viewport);
    for (const path of pages) {
      await page.goto(base + path);
      await h.assertAccessible(page, `${path} at ${viewport.width} px`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  // The login page too.
  await page.locator("header [data-action=logout]").click();
  await page.waitForURL(base + "/ui/login");
  await h.assertAccessible(page, "/ui/login");
  assert.equal(await page.locator("input[autocomplete=username]").count(), 1, "a username for password managers");
  await page.fill("input[name=password]", h.PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/");
});

test("keyboard: a skip link leads past the navigation", async () => {
  await page.goto(base + "/ui/credentials");
  await page.keyboard.press("Tab");
  const first = await page.evaluate(() => document.activeElement.textContent.trim());
  assert.equal(first, "Skip to content");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "main");
});

test("bound hosts on a plain credential are kept, and the notice says they do nothing yet", async () => {
  await page.goto(base + "/ui/credentials");
  await page.locator("#cred-LONG_DESC [data-action=cred-edit]").click();
  const dlg = page.locator("#desc-dialog");
  await dlg.waitFor({ state: "visible" });
  await dlg.locator("select[name=mode]").selectOption("plain");
  await dlg.locator("textarea[name=bound_hosts]").fill("api.example.com\nnot a host");
  await dlg.locator("button[type=submit]").click();
  await dlg.locator(".form-error", { hasText: "line 2: “not a host”" }).waitFor();
  await dlg.locator("textarea[name=bound_hosts]").fill("api.example.com");
  await dlg.locator("button[type=submit]").click();
  const note = await h.expectFlash(page, /Settings of LONG_DESC saved/);
  assert.match(note, /do nothing while it is plain/);
});

test("the value dialog opens clean after an error", async () => {
  await page.goto(base + "/ui/credentials");
  await page.locator("#cred-API_TOKEN [data-action=fill]").click();
  const dlg = page.locator("#value-dialog");
  await dlg.locator("button[type=submit]").click();
  await dlg.locator(".form-error", { hasText: "Enter the value" }).waitFor();
  await dlg.locator("[data-close-dialog]").click();
  await page.locator("#cred-LONG_DESC [data-action=fill]").click();
  await dlg.waitFor({ state: "visible" });
  assert.ok(await dlg.locator(".form-error").isHidden(), "no error left from before");
  assert.equal(await dlg.locator("[data-value-name]").textContent(), "LONG_DESC");
  await dlg.locator("[data-close-dialog]").click();
});

test("packages: a failed request shows the version still in use, and the installer's output", async (t) => {
  if (!(await sandboxReady())) {
    t.skip("SKIPPED: the sandbox is not available; packages install in it");
    return;
  }
  const [keyId] = state.key.split(":");
  const request = async (packages) => {
    const r = await fetch(base + "/requirements", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyId}` },
      body: JSON.stringify({ packages, message: "for the charts" }),
    });
    assert.equal(r.status, 202, await r.clone().text());
    const { install_id: id, status } = await r.json();
    assert.equal(status, "awaiting_review");
    // The operator accepts it in the Requests page.
    await page.goto(base + "/ui/requests");
    const item = page.locator(`.request-item[data-subject="${id}"]`);
    assert.match(await item.textContent(), /for the charts/);
    await item.locator("[data-action=request-accept]").click();
    await h.expectFlash(page, "Accepted: the packages are being installed.");
    for (let i = 0; i < 240; i++) {
      const v = await (await fetch(`${base}/requirements/${id}`, { headers: { Authorization: `Bearer ${keyId}` } })).json();
      if (["installed", "failed"].includes(v.status)) return v;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new Error("install never finished");
  };
  assert.equal((await request(["tinypkg"])).status, "installed");
  const failed = await request(["tinypkg==9.9"]);
  assert.equal(failed.status, "failed");
  await page.goto(base + "/ui/packages");
  const row = page.locator("tbody tr", { hasText: "tinypkg" });
  assert.match(await row.textContent(), /failed/);
  assert.match(await row.locator("[data-still-installed]").textContent(), /1\.0 is still installed/);
  assert.equal((await row.locator("td").nth(3).textContent()).trim(), "1.0");
  await row.locator("summary", { hasText: "Installer output" }).click();
  const log = row.locator(".install-log pre");
  await log.waitFor({ state: "visible" });
  assert.match(await log.textContent(), /9\.9/);
  await h.assertAccessible(page, "/ui/packages with a failed install");
});

test("a save after the session ended says so, and what was typed comes back after login", async () => {
  await page.goto(`${base}/ui/profiles/${state.profile}`);
  const form = page.locator("form[data-form=profile-settings]");
  await form.locator("input[name=description]").fill("Typed before the session ended");
  // The session ends elsewhere (another tab logs out).
  const headers = await h.adminHeaders(context, base);
  const out = await fetch(base + "/api/admin/logout", { method: "POST", headers, body: "{}" });
  assert.ok(out.ok, await out.text());
  await form.locator("button[type=submit]").click();
  const err = form.locator(".form-error");
  await err.waitFor({ state: "visible" });
  assert.match(await err.textContent(), /session has ended.*not saved.*kept/);
  assert.equal(new URL(page.url()).pathname, `/ui/profiles/${state.profile}`, "the page stayed");
  await err.locator("a", { hasText: "Log in again" }).click();
  await page.waitForURL(/\/ui\/login/);
  await page.fill("input[name=password]", h.PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/ui/profiles/${state.profile}`);
  await h.expectFlash(page, /back in the form/);
  assert.equal(await form.locator("input[name=description]").inputValue(), "Typed before the session ended");
  await form.locator("button[type=submit]").click();
  await h.expectFlash(page, /details saved/);
  assert.equal((await admin("GET", `/api/admin/profiles/${state.profile}`)).description, "Typed before the session ended");
  await admin("PUT", `/api/admin/profiles/${state.profile}`, { description: "Billing report bot" });
});

test("a value typed when the session ended is never kept, and the dialog says so", async () => {
  await page.goto(base + "/ui/credentials");
  await page.locator("#cred-API_TOKEN [data-action=fill]").click();
  const dlg = page.locator("#value-dialog");
  await dlg.waitFor({ state: "visible" });
  await dlg.locator("input[name=value]").fill("a-secret-typed-after-logout-123");
  const headers = await h.adminHeaders(context, base);
  await fetch(base + "/api/admin/logout", { method: "POST", headers, body: "{}" });
  await dlg.locator("button[type=submit]").click();
  const err = dlg.locator(".form-error");
  await err.waitFor({ state: "visible" });
  assert.match(await err.textContent(), /session has ended.*never kept/);
  const stored = await page.evaluate(() => JSON.stringify(Object.assign({}, sessionStorage)));
  assert.ok(!stored.includes("a-secret-typed-after-logout-123"), "the value is not in the tab's storage");
  await err.locator("a", { hasText: "Log in again" }).click();
  await page.fill("input[name=password]", h.PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/ui/credentials");
});

test("the UI warns five minutes before an idle session ends", async () => {
  const p2 = await context.newPage();
  try {
    await p2.clock.install({ time: new Date() });
    await p2.goto(base + "/ui/settings");
    await p2.waitForFunction(() => Boolean(document.body.dataset.sessionWarning));
    assert.ok(await p2.locator("#flash").isHidden(), "no warning yet");
    await p2.clock.fastForward("11:56:00");
    await p2.locator("#flash", { hasText: /Your session ends at/ }).waitFor({ state: "visible" });
  } finally {
    await p2.close();
  }
});

// Last: it locks 127.0.0.1 out of logins for the rest of the window.
test("notifications: a webhook added in Settings gets a signed test, and its delivery is shown", async () => {
  const received = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => { received.push({ headers: req.headers, body }); res.statusCode = 204; res.end(); });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}/hook`;
  const secret = "ui-webhook-secret-0123456789";
  try {
    await page.goto(base + "/ui/settings");
    const form = page.locator("form[data-form=webhook-add]");
    await form.locator("input[name=url]").fill(url);
    await form.locator("input[name=secret]").fill("short");
    await form.locator("button[type=submit]").click();
    await form.locator(".form-error", { hasText: "secret must be 16 to 256 characters" }).waitFor();
    await form.locator("input[name=secret]").fill(secret);
    await form.locator("button[type=submit]").click();
    // (Not the flash: an earlier test's session warning may own it.)
    await page.locator("table[data-webhooks]").waitFor();
    assert.match(await page.locator("table[data-webhooks]").textContent(), new RegExp(url.replace(/[.]/g, "\\.")));
    assert.ok(!(await page.content()).includes(secret), "the secret is never shown again");
    await page.locator("button[data-action=webhook-test]").click();
    for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.equal(received.length, 1);
    const { headers, body } = received[0];
    assert.equal(headers["x-airlock-event"], "test");
    const expected = createHmac("sha256", secret).update(`${headers["x-airlock-timestamp"]}.${body}`).digest("hex");
    assert.equal(headers["x-airlock-signature"], `sha256=${expected}`);
    for (let i = 0; i < 100; i++) {
      const d = (await admin("GET", "/api/admin/notifications")).deliveries[0];
      if (d && d.state === "delivered") break;
      await new Promise((ok) => setTimeout(ok, 50));
    }
    await page.goto(base + "/ui/settings");
    assert.match(await page.locator("table[data-deliveries]").textContent(), /test\s*whk_\w+\s*delivered\s*1/);
    await page.locator("button[data-action=webhook-delete]").click();
    await page.locator("#notifications p.empty").waitFor();
    assert.equal((await admin("GET", "/api/admin/notifications")).webhooks.length, 0);
  } finally {
    server.close();
  }
});

test("notifications: e-mail set in Settings reaches a real SMTP server", async () => {
  const port = await new Promise((ok) => {
    const s = createNetServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
  });
  const smtp = spawn("/usr/bin/python3", ["-c", [
    "import json, sys, time",
    "from aiosmtpd.controller import Controller",
    "class H:",
    "    async def handle_DATA(self, server, session, envelope):",
    "        print(json.dumps({'to': envelope.rcpt_tos, 'data': envelope.content.decode()}), flush=True)",
    "        return '250 OK'",
    "c = Controller(H(), hostname='127.0.0.1', port=int(sys.argv[1])); c.start()",
    "print('READY', flush=True)",
    "time.sleep(120)",
  ].join("\n"), String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  smtp.stdout.on("data", (c) => { out += c; });
  try {
    for (let i = 0; i < 200 && !out.includes("READY"); i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.ok(out.includes("READY"), "aiosmtpd did not start");
    await page.goto(base + "/ui/settings");
    const form = page.locator("form[data-form=email-set]");
    await form.locator("input[name=host]").fill("127.0.0.1");
    await form.locator("input[name=port]").fill(String(port));
    await form.locator("select[name=tls]").selectOption("none");
    await form.locator("input[name=from]").fill("Airlock <airlock@example.test>");
    await form.locator("input[name=to]").fill("ops@example.test, oncall@example.test");
    await form.locator("button[type=submit]").click();
    await page.locator("dl[data-email]").waitFor();
    assert.match(await page.locator("dl[data-email]").textContent(), /127\.0\.0\.1:\d+.*ops@example\.test, oncall@example\.test/s);
    await page.locator("button[data-action=webhook-test]").click();
    for (let i = 0; i < 200 && !out.includes("a test notification"); i++) await new Promise((ok) => setTimeout(ok, 50));
    const msg = JSON.parse(out.split("\n").find((l) => l.startsWith("{")));
    assert.deepEqual(msg.to, ["ops@example.test", "oncall@example.test"]);
    assert.match(msg.data, /Subject: Airlock: a test notification/);
    // The click above reloads the page (after its request, which sent the mail):
    // no second navigation to race with it; the button is found once it is back.
    await page.waitForLoadState("load");
    await page.locator("button[data-action=email-clear]").click();
    await page.locator("form[data-form=email-set]").waitFor();
    assert.equal((await admin("GET", "/api/admin/notifications")).email, null);
  } finally {
    smtp.kill();
  }
});

test("another browser's failed logins do not block this operator's export", async () => {
  for (let i = 0; i < 6; i++) {
    const r = await fetch(base + "/api/admin/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Origin: base },
      body: JSON.stringify({ password: "not the password at all" }),
    });
    assert.ok([401, 429].includes(r.status), String(r.status));
  }
  await page.goto(base + "/ui/settings");
  const ex = page.locator("form[data-form=export]");
  await ex.locator("input[name=password]").fill(h.PASSWORD);
  await ex.locator("input[name=passphrase]").fill("walkthrough passphrase 1");
  await ex.locator("input[name=confirm]").fill("walkthrough passphrase 1");
  const [download] = await Promise.all([page.waitForEvent("download"), ex.locator("button[type=submit]").click()]);
  assert.match(download.suggestedFilename(), /\.airlock$/);
  await h.expectFlash(page, /Export saved/);
});

test("no script error or CSP violation happened in any page", () => {
  assert.deepEqual(pageErrors, []);
});
