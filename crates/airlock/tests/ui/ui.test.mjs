// Browser tests of Airlock's web UI.
//
// Starts a real `airlock` binary (AIRLOCK_BIN) on 127.0.0.1 with a fresh data
// directory and drives Debian's Chromium (CHROMIUM, default /usr/bin/chromium)
// through playwright-core. The flow is the operator's first day: set the
// password, add credentials, create a profile, fill a missing value, restrict
// the network, lock, copy the one-time key, run a script with that key, see it
// in the executions page, revoke, log out and back in. Screenshots of every
// main page go to ARTIFACTS_DIR (default ./artifacts).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as h from "./harness.mjs";

const PASSWORD = h.PASSWORD;
const SECRET = "ghp_UiTestSecretValue_0123456789abcdef";
const DB_SECRET = "db-password-for-ui-test-987654";
const XSS = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;

let airlock;
let base;
let tmp;
let context;
let page;
let pageErrors;

const shot = (name) => h.shot(page, name);
const formError = (text) => h.formError(page, text);
const expectFlash = (text) => h.expectFlash(page, text);

/** Everything the page's HTML holds: must never contain a value. */
async function assertNoSecrets(where) {
  const html = await page.content();
  assert.ok(!html.includes(SECRET), `${where}: credential value in the page`);
  assert.ok(!html.includes(DB_SECRET), `${where}: credential value in the page`);
}

before(async () => {
  airlock = await h.startAirlock("flow");
  ({ base, tmp } = airlock);
  ({ context, page, pageErrors } = await h.launchBrowser(tmp, base));
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (airlock) await airlock.stop();
});

// The steps share one browser and one server, in order.
const state = {};

test("first visit: the UI asks for an admin password", async () => {
  const resp = await page.goto(base + "/");
  assert.equal(new URL(page.url()).pathname, "/ui/setup");
  const headers = resp.headers();
  assert.match(headers["content-security-policy"], /script-src 'self'/);
  assert.equal(headers["x-frame-options"], "DENY");

  await page.fill("input[name=password]", "too short");
  await page.fill("input[name=confirm]", "too short");
  assert.equal(await page.locator("#setup-strength").getAttribute("data-level"), "1");
  await page.click("button[type=submit]");
  await formError(/at least 12 characters/);

  await page.fill("input[name=password]", PASSWORD);
  await page.fill("input[name=confirm]", PASSWORD + "x");
  await page.click("button[type=submit]");
  await formError(/do not match/);
  await shot("setup");
  await h.assertAccessible(page, "/ui/setup");

  await page.fill("input[name=confirm]", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/");
  await expectFlash(/Admin password set/);
  await page.locator("h1", { hasText: "Overview" }).waitFor();
});

test("credentials: add one with a value and one slot, descriptions render as text", async () => {
  await page.click("nav.mainnav >> text=Credentials");
  await page.waitForURL(base + "/ui/credentials");
  const form = page.locator("form[data-form=cred-create]");
  await form.locator("input[name=name]").fill("GITHUB_TOKEN");
  await form.locator("input[name=description]").fill(XSS);
  await form.locator("input[name=value]").fill("abc");
  await form.locator("[data-short-warning]").waitFor({ state: "visible" });
  await form.locator("input[name=value]").fill(SECRET);
  await form.locator("[data-short-warning]").waitFor({ state: "hidden" });
  await form.locator("button[type=submit]").click();
  await expectFlash(/Credential GITHUB_TOKEN added with its value/);

  const row = page.locator("#cred-GITHUB_TOKEN");
  assert.equal((await row.locator(".badge").textContent()).trim(), "set");
  // The description is shown literally and ran nothing.
  assert.equal((await row.locator(".desc-cell").textContent()).trim(), XSS);
  assert.equal(await page.evaluate(() => window.__xss), undefined);

  await form.locator("input[name=name]").fill("DB_PASSWORD");
  await form.locator("input[name=description]").fill("staging database, read-only user");
  await form.locator("button[type=submit]").click();
  await expectFlash(/DB_PASSWORD added; fill in its value/);
  assert.equal((await page.locator("#cred-DB_PASSWORD .badge").textContent()).trim(), "missing");

  // The value input is never pre-filled.
  await page.locator("#cred-GITHUB_TOKEN [data-action=fill]").click();
  const dlg = page.locator("#value-dialog");
  await dlg.waitFor({ state: "visible" });
  assert.equal(await dlg.locator("input[name=value]").inputValue(), "");
  assert.equal(await dlg.locator("input[name=value]").getAttribute("type"), "password");
  await dlg.locator("[data-close-dialog]").click();
  await assertNoSecrets("credentials");
  await shot("credentials");
});

test("credentials: seal one to its host in the edit dialog", async () => {
  await page.goto(base + "/ui/credentials");
  const row = page.locator("#cred-DB_PASSWORD");
  assert.equal((await row.locator(".mode-cell").textContent()).trim(), "plain");
  await row.locator("[data-action=cred-edit]").click();
  const dlg = page.locator("#desc-dialog");
  await dlg.waitFor({ state: "visible" });
  await dlg.locator("select[name=mode]").selectOption("sealed");
  await dlg.locator("textarea[name=bound_hosts]").fill("db-api.example.com\n*.example.org:8443");
  await dlg.locator("input[name=bound_methods]").fill("get, post");
  await dlg.locator("input[name=revoke_on_violation]").check();
  await dlg.locator("button[type=submit]").click();
  await expectFlash(/Settings of DB_PASSWORD saved/);
  const cell = page.locator("#cred-DB_PASSWORD .mode-cell");
  assert.match((await cell.textContent()).replace(/\s+/g, " ").trim(), /^sealed db-api\.example\.com, \*\.example\.org:8443$/);
  const r = await fetch(base + "/credentials");
  const slot = (await r.json()).credentials.find((c) => c.name === "DB_PASSWORD");
  assert.deepEqual(slot, { name: "DB_PASSWORD", description: "staging database, read-only user", value_exists: false,
    mode: "sealed", bound_hosts: ["db-api.example.com", "*.example.org:8443"], request: null });
  // The dialog shows the saved settings; back to plain keeps the hosts.
  await page.locator("#cred-DB_PASSWORD [data-action=cred-edit]").click();
  await dlg.waitFor({ state: "visible" });
  assert.equal(await dlg.locator("select[name=mode]").inputValue(), "sealed");
  assert.equal(await dlg.locator("input[name=bound_methods]").inputValue(), "GET, POST");
  assert.equal(await dlg.locator("input[name=revoke_on_violation]").isChecked(), true);
  await dlg.locator("select[name=mode]").selectOption("plain");
  await dlg.locator("button[type=submit]").click();
  await expectFlash(/Settings of DB_PASSWORD saved/);
  // The same notice was already up from the save before: wait for the reload's table.
  await page.locator("#cred-DB_PASSWORD .mode-cell", { hasText: /^\s*plain\s*$/ }).waitFor();
});

test("credentials: a database login makes a sealed PostgreSQL credential", async () => {
  await page.goto(base + "/ui/credentials");
  const form = page.locator("form[data-form=cred-create]");
  await form.locator("input[name=name]").fill("SHOP_DB");
  await form.locator("input[name=description]").fill("the shop database");
  await form.locator("input[name=value]").fill(SECRET);
  await form.locator("details.db-login summary").click();
  await form.locator("input[name=db_host]").fill("db.internal");
  await form.locator("input[name=db_port]").fill("5432");
  await form.locator("input[name=db_database]").fill("shop");
  await form.locator("input[name=db_user]").fill("report");
  await form.locator("input[name=db_read_only]").check();
  await form.locator("button[type=submit]").click();
  await expectFlash(/Credential SHOP_DB added with its value/);
  const cell = page.locator("#cred-SHOP_DB .mode-cell");
  assert.equal((await cell.textContent()).replace(/\s+/g, " ").trim(), "sealed postgres report@db.internal:5432/shop");
  const r = await fetch(base + "/credentials");
  const slot = (await r.json()).credentials.find((c) => c.name === "SHOP_DB");
  assert.deepEqual(slot.database, { protocol: "postgres", host: "db.internal", port: 5432, database: "shop",
    user: "report", tls: "verify-full", read_only: true });
  assert.equal(slot.mode, "sealed");
  // The edit dialog shows the login; a new port is saved.
  await page.locator("#cred-SHOP_DB [data-action=cred-edit]").click();
  const dlg = page.locator("#desc-dialog");
  await dlg.waitFor({ state: "visible" });
  assert.equal(await dlg.locator("input[name=db_host]").inputValue(), "db.internal");
  assert.equal(await dlg.locator("input[name=db_read_only]").isChecked(), true);
  await dlg.locator("input[name=db_port]").fill("6543");
  await dlg.locator("button[type=submit]").click();
  await expectFlash(/Settings of SHOP_DB saved/);
  assert.match((await cell.textContent()).replace(/\s+/g, " ").trim(), /:6543\/shop$/);
  await assertNoSecrets("credentials");
});

test("profiles: create, fill the missing value, restrict the network, lock and read the key", async () => {
  await page.click("nav.mainnav >> text=Profiles");
  await page.waitForURL(base + "/ui/profiles");
  const form = page.locator("form[data-form=profile-create]");
  await form.locator("input[name=description]").fill("Deploy bot: GitHub and the staging database");
  await form.locator("input[value=GITHUB_TOKEN]").check();
  await form.locator("input[value=DB_PASSWORD]").check();
  await form.locator("button[type=submit]").click();
  await page.waitForURL(/\/ui\/profiles\/[^/]+$/);
  state.profileId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
  await expectFlash(/created/);
  assert.equal((await page.locator("h1 .badge").textContent()).trim(), "unlocked");

  // Locking waits for the missing value, which can be filled in right here.
  assert.ok(await page.locator("[data-action=profile-lock]").isDisabled());
  await shot("profile-unlocked");
  await page.locator("li[data-cred=DB_PASSWORD] [data-action=fill]").click();
  const dlg = page.locator("#value-dialog");
  await dlg.waitFor({ state: "visible" });
  await dlg.locator("input[name=value]").fill(DB_SECRET);
  await dlg.locator("button[type=submit]").click();
  await expectFlash(/Value of DB_PASSWORD saved/);
  assert.ok(await page.locator("[data-action=profile-lock]").isEnabled());

  // Network: the unrestricted choice warns; save a list instead.
  const hosts = page.locator("form[data-form=profile-hosts]");
  await hosts.locator("input[value=any]").check();
  await hosts.locator("[data-hosts-warning]").waitFor({ state: "visible" });
  await hosts.locator("input[value=list]").check();
  await hosts.locator("textarea[name=hosts]").fill("api.github.com\n*.example.com");
  await hosts.locator("button[type=submit]").click();
  await expectFlash(/Network access saved/);
  assert.equal(await hosts.locator("textarea[name=hosts]").inputValue(), "api.github.com\n*.example.com");
  assert.ok(await hosts.locator("input[value=list]").isChecked());
  assert.ok(await hosts.locator("[data-hosts-warning]").isHidden());

  // Expiry picker round-trips.
  const details = page.locator("form[data-form=profile-settings]");
  await details.locator("input[name=expires_at]").fill("2099-12-31T23:30");
  await details.locator("button[type=submit]").click();
  await expectFlash(/details saved/);
  assert.equal(await details.locator("input[name=expires_at]").inputValue(), "2099-12-31T23:30");

  // Lock: confirm, then the one-time key.
  await page.locator("[data-action=profile-lock]").click();
  const confirm = page.locator("#confirm-dialog");
  await confirm.waitFor({ state: "visible" });
  assert.match(await confirm.textContent(), /no longer change/);
  await confirm.locator("[data-confirm-ok]").click();
  const keyDialog = page.locator("#key-dialog");
  await keyDialog.waitFor({ state: "visible" });
  assert.match(await keyDialog.textContent(), /won't be shown again/);
  const key = await keyDialog.locator("[data-key-output]").inputValue();
  assert.match(key, /^ark_[a-z0-9]+:[A-Za-z0-9]+$/);
  state.key = key;
  await keyDialog.locator("[data-action=copy-key]").click();
  await keyDialog.locator("[data-copy-status]", { hasText: /Copied|selected/ }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
  if (copied !== null) assert.equal(copied, key);
  await shot("key-dialog");
  await keyDialog.locator("[data-key-done]").click();
  await expectFlash(/Profile locked/);
  assert.equal((await page.locator("h1 .badge").textContent()).trim(), "locked");
  const html = await page.content();
  assert.ok(!html.includes(key.split(":")[1]), "the key secret stays out of the page after the dialog");
  await assertNoSecrets("profile");
  await shot("profile");
});

test("executions: a script run with the key shows up with its output", async (t) => {
  const health = await (await fetch(base + "/health")).json();
  if (!health.sandbox || !health.sandbox.ready) {
    t.skip(`SKIPPED: the sandbox is not available on this machine (${health.sandbox && health.sandbox.reason}); no execution to show`);
    return;
  }
  const script = "import sys\nprint('hello from the sandbox', settings.get('GITHUB_TOKEN'))\nprint('<b>not bold</b>', file=sys.stderr)\nset_result({'ok': True, 'n': 42})\n";
  const done = await h.execute(base, state.key, script);
  assert.equal(done.status, "completed", JSON.stringify(done));
  const id = done.execution_id;

  await page.click("nav.mainnav >> text=Executions");
  await page.waitForURL(base + "/ui/executions");
  await page.locator(`a[href="/ui/executions/${id}"]`).click();
  await page.waitForURL(`${base}/ui/executions/${id}`);
  await h.assertAccessible(page, "an execution with output");
  const body = await page.locator("main").textContent();
  assert.match(body, /hello from the sandbox \[REDACTED:GITHUB_TOKEN\]/);
  assert.match(body, /<b>not bold<\/b>/);
  assert.match(body, /"n": 42/);
  await assertNoSecrets("execution");
  await shot("execution");

  // Filter by status and profile.
  await page.goto(`${base}/ui/executions?status=error`);
  assert.equal(await page.locator(`a[href="/ui/executions/${id}"]`).count(), 0);
  await page.goto(`${base}/ui/executions?profile=${encodeURIComponent(state.profileId)}`);
  assert.equal(await page.locator(`a[href="/ui/executions/${id}"]`).count(), 1);
  await shot("executions");
});

test("overview and settings render", async () => {
  await page.goto(base + "/");
  await page.locator("h1", { hasText: "Overview" }).waitFor();
  await page.locator("svg.chart").waitFor();
  await assertNoSecrets("overview");
  await shot("overview");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("overview-phone");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(base + "/ui/settings");
  await page.locator("h2", { hasText: "Change the admin password" }).waitFor();
  await shot("settings");
  await page.goto(base + "/ui/profiles");
  await shot("profiles");
  await page.click("nav.mainnav >> text=Packages");
  await page.locator("h1", { hasText: "Packages" }).waitFor();
  await page.locator("p.empty", { hasText: "No package has been requested yet." }).waitFor();
  await shot("packages");
});

test("regenerate key: confirm, a new key once, the old one refused", async () => {
  await page.goto(`${base}/ui/profiles/${encodeURIComponent(state.profileId)}`);
  await page.locator("[data-action=profile-regen]").click();
  const confirm = page.locator("#confirm-dialog");
  await confirm.waitFor({ state: "visible" });
  assert.match(await confirm.textContent(), /stops working immediately/);
  await confirm.locator("[data-confirm-ok]").click();
  const keyDialog = page.locator("#key-dialog");
  await keyDialog.waitFor({ state: "visible" });
  const key = await keyDialog.locator("[data-key-output]").inputValue();
  assert.match(key, /^ark_[a-z0-9]+:[A-Za-z0-9]+$/);
  assert.notEqual(key, state.key);
  await keyDialog.locator("[data-key-done]").click();
  await expectFlash(/New key issued/);
  const old = await fetch(base + "/executions", { headers: { Authorization: `Bearer ${state.key.split(":")[0]}` } });
  assert.equal(old.status, 401);
  const fresh = await fetch(base + "/executions", { headers: { Authorization: `Bearer ${key.split(":")[0]}` } });
  assert.equal(fresh.status, 200);
  state.key = key;
});

test("revoke: confirm, the profile is revoked and its key refused", async () => {
  await page.goto(`${base}/ui/profiles/${encodeURIComponent(state.profileId)}`);
  await page.locator("[data-action=profile-revoke]").click();
  const confirm = page.locator("#confirm-dialog");
  await confirm.waitFor({ state: "visible" });
  await confirm.locator("[data-confirm-ok]").click();
  await expectFlash(/revoked/);
  assert.equal((await page.locator("h1 .badge").textContent()).trim(), "revoked");
  const keyId = state.key.split(":")[0];
  const r = await fetch(base + "/executions", { headers: { Authorization: `Bearer ${keyId}` } });
  assert.equal(r.status, 401);

  // A credential a locked profile used can now be deleted; the UI says what happened.
  await page.goto(base + "/ui/credentials");
  await page.locator("#cred-DB_PASSWORD [data-action=cred-delete]").click();
  await page.locator("#confirm-dialog [data-confirm-ok]").click();
  await expectFlash(/DB_PASSWORD deleted/);
});

test("a credential used by a locked profile cannot be deleted, with the reason shown", async () => {
  // A fresh locked profile through the API, sharing the browser's session.
  const headers = await h.adminHeaders(context, base);
  const p = await (await fetch(base + "/api/admin/profiles", {
    method: "POST", headers, body: JSON.stringify({ description: "second", credentials: ["GITHUB_TOKEN"] }),
  })).json();
  const lock = await fetch(`${base}/api/admin/profiles/${p.id}/lock`, { method: "POST", headers, body: "{}" });
  assert.equal(lock.status, 200);
  await page.goto(base + "/ui/credentials");
  await page.locator("#cred-GITHUB_TOKEN [data-action=cred-delete]").click();
  await page.locator("#confirm-dialog [data-confirm-ok]").click();
  await expectFlash(/used by locked profile/);
  assert.ok(await page.locator("#flash").evaluate((el) => el.classList.contains("notice-error")));
  await page.locator("#cred-GITHUB_TOKEN").waitFor();
});

test("settings: export downloads an encrypted file, import previews and applies it", async () => {
  const passphrase = "ui export passphrase 1";
  await page.goto(base + "/ui/settings");
  const ex = page.locator("form[data-form=export]");
  await ex.locator("input[name=password]").fill(PASSWORD);
  await ex.locator("input[name=passphrase]").fill(passphrase);
  await ex.locator("input[name=confirm]").fill(passphrase + "x");
  await ex.locator("button[type=submit]").click();
  await formError(/do not match/);
  await ex.locator("input[name=confirm]").fill(passphrase);
  await ex.locator("input[name=include_executions]").check();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    ex.locator("button[type=submit]").click(),
  ]);
  assert.match(download.suggestedFilename(), /^airlock-\d{4}-\d{2}-\d{2}\.airlock$/);
  const file = join(tmp, "ui-export.airlock");
  await download.saveAs(file);
  const bytes = readFileSync(file);
  assert.equal(bytes.subarray(0, 21).toString(), "age-encryption.org/v1");
  assert.ok(!bytes.includes(SECRET), "the value is not in the clear");
  await expectFlash(/Export saved/);
  await shot("settings-export");

  const up = page.locator("form[data-form=import-preview]");
  await up.locator("input[name=file]").setInputFiles(file);
  await up.locator("input[name=password]").fill(PASSWORD);
  await up.locator("input[name=passphrase]").fill("not the passphrase");
  await up.locator("button[type=submit]").click();
  await formError(/passphrase does not open/);
  await up.locator("input[name=password]").fill(PASSWORD);
  await up.locator("input[name=passphrase]").fill(passphrase);
  await up.locator("button[type=submit]").click();
  const confirm = page.locator("form[data-form=import-commit]");
  await confirm.waitFor({ state: "visible" });
  const rows = await confirm.locator("[data-import-rows]").textContent();
  assert.match(rows, /GITHUB_TOKEN/);
  assert.match(rows, /exists here/);
  assert.ok(!rows.includes(SECRET));
  await confirm.locator("[data-import-choice=credentials]").waitFor({ state: "visible" });
  await shot("settings-import-preview");
  await confirm.locator("button[type=submit]").click();
  await expectFlash(/Import done\. Credentials: .*skipped/);
});

test("logout, then login returns to the page asked for", async () => {
  await page.goto(base + "/ui/settings");
  await page.locator("header [data-action=logout]").click();
  await page.waitForURL(base + "/ui/login");
  await page.goto(base + "/ui/credentials");
  assert.equal(new URL(page.url()).pathname, "/ui/login");
  assert.ok(!(await page.content()).includes("GITHUB_TOKEN"), "no data before login");
  await shot("login");
  await h.assertAccessible(page, "/ui/login");
  await page.fill("input[name=password]", "wrong password!!");
  await page.click("button[type=submit]");
  await formError(/wrong password/);
  await page.fill("input[name=password]", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/ui/credentials");
  await page.locator("#cred-GITHUB_TOKEN").waitFor();
});

test("no script error or CSP violation happened in any page", () => {
  assert.deepEqual(pageErrors, []);
});
