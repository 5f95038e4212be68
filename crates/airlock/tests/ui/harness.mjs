// What every browser test file needs: a real `airlock` binary (AIRLOCK_BIN) on
// 127.0.0.1 with a fresh data directory, and Debian's Chromium (CHROMIUM,
// default /usr/bin/chromium) driven by playwright-core with the flags this
// machine needs. Screenshots and the server log go to ARTIFACTS_DIR.

import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, createWriteStream, readFileSync, chmodSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = process.env.ARTIFACTS_DIR || join(here, "artifacts");
export const PASSWORD = "correct horse battery staple";

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * A fresh directory the sandbox can see: package installs are refused under
 * /tmp (every sandbox gets its own), so it is made under /var/tmp.
 */
export function sandboxVisibleDir(prefix) {
  const dir = mkdtempSync(join("/var/tmp", prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** Writes a pure-Python wheel `name-version` holding `files` into `dir`. */
export function makeWheel(dir, name, version, files) {
  const spec = { dir, wheels: [{ name, version, files }] };
  const r = spawnSync("/usr/bin/python3", [join(here, "..", "make_dists.py"), JSON.stringify(spec)], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
}

/** Starts airlock; returns { base, tmp, server, stop() }. `name` labels its log. */
export async function startAirlock(name, extraEnv = {}, tmpRoot = tmpdir()) {
  const bin = process.env.AIRLOCK_BIN;
  assert.ok(bin, "set AIRLOCK_BIN to the airlock binary (run.sh does)");
  mkdirSync(ARTIFACTS, { recursive: true });
  const tmp = mkdtempSync(join(tmpRoot, "airlock-ui-"));
  chmodSync(tmp, 0o755);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = createWriteStream(join(ARTIFACTS, `server-${name}.log`));
  const server = spawn(bin, ["serve", "--bind", `127.0.0.1:${port}`, "--data-dir", join(tmp, "data")], {
    env: {
      ...process.env,
      AIRLOCK_LOG: process.env.AIRLOCK_LOG || "info",
      AIRLOCK_SANDBOX: process.env.AIRLOCK_SANDBOX || "permissive",
      ...extraEnv,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  const end = Date.now() + 60_000;
  let last;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`airlock exited with ${server.exitCode}; see ${ARTIFACTS}/server-${name}.log`);
    if (Date.now() > end) throw new Error(`airlock did not become healthy: ${last}`);
    try {
      const r = await fetch(base + "/health");
      if (r.ok) break;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    tmp,
    server,
    async stop() {
      if (server.exitCode === null) {
        server.kill("SIGTERM");
        await new Promise((r) => server.once("exit", r));
      }
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/**
 * Launches Chromium with a fresh profile under `tmp`; returns { context, page,
 * pageErrors } where pageErrors collects script errors and CSP violations.
 */
export async function launchBrowser(tmp, base, viewport = { width: 1280, height: 900 }) {
  const context = await chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport,
    locale: "en-US",
    timezoneId: "UTC",
  });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15_000);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => {
    // Refused API calls (409, 401) are expected and shown in the page; anything
    // else, such as a CSP violation, is a failure.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
  });
  return { context, page, pageErrors };
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

export async function formError(page, text) {
  await page.locator("form .form-error", { hasText: text }).waitFor();
}

/** Waits for the notice an action shows (after its page reload, if any). */
export async function expectFlash(page, text) {
  const flash = page.locator("#flash", { hasText: text });
  await flash.waitFor({ state: "visible" });
  return (await flash.textContent()).trim();
}

/**
 * Runs `script` with the profile key `key` (signed as an agent does) until its
 * status is one of `until`; returns the execution.
 */
export async function execute(base, key, script, until = ["completed", "error", "timeout", "denied"]) {
  const [keyId, secret] = key.split(":");
  const ts = Math.floor(Date.now() / 1000);
  const nonce = randomBytes(16).toString("hex");
  const hash = createHmac("sha256", secret).update(`${ts}\n${nonce}\n${script}`).digest("hex");
  const r = await fetch(base + "/execute", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyId}` },
    body: JSON.stringify({ script, hash, ts, nonce }),
  });
  assert.equal(r.status, 202, await r.clone().text());
  const submitted = await r.json();
  // Already there (a script held for approval): no long-poll for a change.
  if (until.includes(submitted.status)) return submitted;
  const id = submitted.execution_id;
  let v;
  for (let i = 0; i < 30; i++) {
    v = await (await fetch(`${base}/executions/${id}?wait=10`, { headers: { Authorization: `Bearer ${keyId}` } })).json();
    if (until.includes(v.status)) break;
  }
  assert.ok(until.includes(v.status), JSON.stringify(v));
  return v;
}

/** Headers for admin API calls that share the browser's session. */
export async function adminHeaders(context, base) {
  const cookies = await context.cookies(base);
  const cookie = cookies.map((c) => `${c.name}=${c.value}`).join("; ");
  return { "Content-Type": "application/json", Cookie: cookie, Origin: base };
}

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core on the current page (injected through the DevTools protocol,
 * which the page's CSP does not apply to) and fails on any serious or critical
 * violation, naming each with the elements it found.
 */
export async function assertAccessible(page, where) {
  // A string is evaluated as a script by the DevTools protocol (eval() inside
  // the page would be refused by its CSP).
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
    }));
  });
  const bad = result.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `${where}: accessibility violations`);
  return result;
}
