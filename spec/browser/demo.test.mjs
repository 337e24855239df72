// The demo page in a real browser: headless Chromium (Debian's package,
// driven by playwright-core, nothing downloaded) runs the real
// @picahq/authkit widget against `authkit-broker --dev` and its sandbox
// widget page. The demo page is served from its own origin (a tiny
// static server here), the broker and the sandbox from two others, so
// every call the page and the widget make is cross-origin and CORS is
// really exercised.
//
//   npm ci --prefix examples/demo && npm ci --prefix spec/browser
//   AUTHKIT_BROKER_BIN=build/authkit-broker node --test spec/browser/
//
// Environment: AUTHKIT_BROKER_BIN (default build/authkit-broker),
// AUTHKIT_BROKER_ROOT (default: the repository holding this file),
// CHROMIUM_BIN (default /usr/bin/chromium). A screenshot of the demo
// with a stored connection goes to spec/browser/artifacts/demo.png, one
// of the open widget to artifacts/widget.png, and the broker's log to
// artifacts/broker.log.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, request } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, rmSync,
         writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(process.env.AUTHKIT_BROKER_ROOT || join(HERE, "..", ".."));
const BIN = resolve(ROOT, process.env.AUTHKIT_BROKER_BIN || "build/authkit-broker");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const DEMO_DIR = join(ROOT, "examples", "demo");
const ARTIFACTS = join(HERE, "artifacts");

const START_TIMEOUT_MS = 10000;
const STEP_TIMEOUT_MS = 15000;
const TEST_TIMEOUT_MS = 120000;
// waitForFunction polls on animation frames by default, which a page
// without focus may not get: poll on a timer instead.
const POLL = { polling: 100 };

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
};

let chromium;
let work;         // temporary directory of this run
let demoServer;   // the static server of the demo page
let demoOrigin;
let broker;       // {proc, log(), api, sandbox}
let context;      // the browser (a persistent context on a fresh profile)

// Fails with how to fix it when something the test needs is missing.
function need(ok, what) {
  if (!ok) {
    throw new Error("browser test: " + what);
  }
}

// Serves DEMO_DIR at /demo/ and nothing else; no "..", no hidden files.
function startDemoServer() {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let rel = path.startsWith("/demo/") ? path.slice(6) : null;
    if (rel !== null && (rel === "" || rel.endsWith("/"))) {
      rel += "index.html";
    }
    const full = rel === null ? null : resolve(DEMO_DIR, rel);
    if (req.method !== "GET" || full === null || rel.includes("\0")
        || !full.startsWith(DEMO_DIR + sep)
        || rel.split("/").some((p) => p.startsWith("."))) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    try {
      const body = await readFile(full);
      res.writeHead(200, {
        "content-type": TYPES[extname(full)] || "application/octet-stream",
        "cache-control": "no-store",
      }).end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => ok(server));
  });
}

// Waits until `fn()` answers something truthy; polls every 50 ms.
async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error("timed out waiting for " + what);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Starts `authkit-broker --dev` on free loopback ports; the demo's
// origin is the one extra CORS origin it allows.
async function startBroker() {
  const config = join(work, "config.lua");
  writeFileSync(config, "return {\n"
    + `  data_dir = ${JSON.stringify(join(work, "data"))},\n`
    + `  cors_origins = {${JSON.stringify(demoOrigin)}},\n`
    + "}\n");
  let log = "";
  const env = { ...process.env };
  delete env.PICA_SECRET_KEY;
  const proc = spawn(BIN, ["--dev", "--config", config,
    "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
    "--plugins", join(ROOT, "plugins")],
  { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout.on("data", (d) => { log += d; });
  proc.stderr.on("data", (d) => { log += d; });
  let exited = null;
  proc.on("exit", (code, signal) => { exited = { code, signal }; });
  const b = {
    proc,
    log: () => log,
    save: () => {
      mkdirSync(ARTIFACTS, { recursive: true });
      writeFileSync(join(ARTIFACTS, "broker.log"), log);
    },
  };
  const api = await waitFor(() => {
    if (exited) {
      throw new Error("the broker exited (" + JSON.stringify(exited)
        + "):\n" + log);
    }
    return log.match(/listening on http:\/\/([\d.]+:\d+) \(api/);
  }, START_TIMEOUT_MS, "the broker to listen").catch((e) => {
    proc.kill("SIGKILL");
    throw new Error(e.message + "\n" + log);
  });
  b.api = "http://" + api[1];
  const sb = log.match(/sandbox Pica on http:\/\/([\d.]+:\d+)/);
  need(sb, "the broker did not log its sandbox address:\n" + log);
  b.sandbox = "http://" + sb[1];
  return b;
}

// Stops the broker: SIGTERM, SIGKILL after 5 s.
async function stopBroker(b) {
  if (!b || b.proc.exitCode !== null || b.proc.signalCode !== null) {
    return;
  }
  const gone = new Promise((r) => b.proc.once("close", r));
  b.proc.kill("SIGTERM");
  const timer = setTimeout(() => b.proc.kill("SIGKILL"), 5000);
  await gone;
  clearTimeout(timer);
}

// The broker's answer to GET /api/connections for `user`, from Node.
async function storedFor(user) {
  const res = await fetch(broker.api + "/api/connections", {
    headers: { "x-user-id": user },
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  assert.equal(res.status, 200);
  return (await res.json()).connections;
}

// Never leave the broker behind, even when the runner is interrupted.
process.on("exit", () => {
  if (broker && broker.proc.exitCode === null
      && broker.proc.signalCode === null) {
    broker.proc.kill("SIGKILL");
  }
});

before(async () => {
  need(existsSync(BIN), `no broker binary at ${BIN}: build it `
    + "(bash scripts/build.sh) or set AUTHKIT_BROKER_BIN");
  need(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install `
    + "chromium, or set CHROMIUM_BIN");
  need(existsSync(join(DEMO_DIR, "node_modules/@picahq/authkit/dist/"
    + "index.umd.js")), "@picahq/authkit is not installed: npm ci "
    + "--prefix examples/demo");
  try {
    ({ chromium } = await import("playwright-core"));
  } catch {
    need(false, "playwright-core is not installed: npm ci --prefix "
      + "spec/browser");
  }
  work = mkdtempSync(join(tmpdir(), "authkit-browser-"));
  demoServer = await startDemoServer();
  demoOrigin = "http://127.0.0.1:" + demoServer.address().port;
  broker = await startBroker();
  context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    viewport: { width: 1100, height: 800 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
});

after(async () => {
  if (context) {
    await context.close().catch(() => {});
  }
  await stopBroker(broker);
  if (demoServer) {
    demoServer.closeAllConnections();
    await new Promise((r) => demoServer.close(r));
  }
  if (broker) {
    const log = broker.log();
    broker.save();
    assert.doesNotMatch(log, /AddressSanitizer|LeakSanitizer|runtime error:/,
      "sanitizer report in the broker's log (artifacts/broker.log)");
    assert.doesNotMatch(log, /level=error/,
      "error in the broker's log (artifacts/broker.log)");
  }
  if (work) {
    rmSync(work, { recursive: true, force: true });
  }
});

test("the demo connects, lists, keeps users apart and deletes",
  { timeout: TEST_TIMEOUT_MS }, async (t) => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));

    // Another origin than the broker's: the page, the widget and the
    // broker are three origins.
    assert.notEqual(new URL(broker.api).origin, demoOrigin);
    await page.goto(`${demoOrigin}/demo/?broker=${encodeURIComponent(
      broker.api)}&user=alice`);
    await page.waitForSelector("body[data-ready=true]");
    await page.waitForSelector("body[data-listed-for=alice]");
    assert.equal(await page.locator("#rows tr").count(), 0);
    assert.equal(await page.locator("#banner").isHidden(), true);

    // alice opens the real package's widget and picks an integration.
    await page.click("#connect");
    const iframe = page.locator("iframe#event-link");
    await iframe.waitFor({ state: "visible" });
    assert.match(await iframe.getAttribute("src"),
      new RegExp("^" + broker.sandbox + "/widget\\?data="));
    const widget = page.frameLocator("iframe#event-link");
    await widget.locator("body[data-view=list]").waitFor({ state: "attached" });
    const all = await widget.locator("button.item").count();
    assert.ok(all > 100, `the widget lists the integrations (${all})`);
    await widget.locator("#search").fill("hub");
    await widget.locator("button.item[data-title=HubSpot]").waitFor();
    assert.ok(await widget.locator("button.item").count() < all,
      "search narrows the list");
    await page.screenshot({ path: join(ARTIFACTS, "widget.png") });
    await widget.locator("button.item[data-title=HubSpot]").click();

    // LINK_SUCCESS reaches the page, which stores it at the broker.
    await widget.locator("body[data-view=done]").waitFor({ state: "attached" });
    const row = page.locator("#rows tr[data-platform=hubspot]");
    await row.waitFor();
    assert.equal(await row.locator("td.state").textContent(), "operational");
    const key = await row.getAttribute("data-key");
    assert.match(key, /^test::hubspot::default::[0-9a-f]{32}\|alice$/);
    const stored = await storedFor("alice");
    assert.deepEqual(stored.map((c) => [c.platform, c.identity,
      c.connection_key]), [["hubspot", "alice", key]]);

    // Done closes the widget (EXIT_EVENT_LINK; the package removes it).
    await widget.locator("#done").click();
    await iframe.waitFor({ state: "detached" });
    await page.locator("#log li", { hasText: "EXIT_EVENT_LINK" }).waitFor();
    await page.locator("#log li", { hasText: "LINK_SUCCESS" }).waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "demo.png"),
      fullPage: true });

    // "Try it": a passthrough call with alice's connection answers.
    await row.locator("button.try").click();
    const result = page.locator("#pt-result[data-status]");
    await result.waitFor();
    const ptStatus = await result.getAttribute("data-status");
    assert.equal(ptStatus, "200",
      `passthrough answered ${ptStatus}: ${await result.textContent()}`);

    // bob sees none of alice's connections, in the page and at the API.
    await page.selectOption("#user", "bob");
    await page.waitForSelector("body[data-listed-for=bob]");
    assert.equal(await page.locator("#rows tr").count(), 0);
    assert.equal(await page.locator("#empty").isVisible(), true);
    assert.deepEqual(await storedFor("bob"), []);
    assert.equal((await storedFor("alice")).length, 1);

    // Back to alice: delete it; the list and the store are empty.
    await page.selectOption("#user", "alice");
    await page.waitForSelector("body[data-listed-for=alice]");
    await row.locator("button.delete").click();
    await row.waitFor({ state: "detached" });
    await page.locator("#log li", { hasText: "deleted hubspot" }).waitFor();
    assert.deepEqual(await storedFor("alice"), []);

    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
    await page.close();
  });

test("the demo served by the broker itself connects (the README's URL)",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(broker.api + "/?user=bob");  // redirected to /demo/
    assert.equal(new URL(page.url()).pathname, "/demo/");
    await page.waitForSelector("body[data-listed-for=bob]");
    await page.click("#connect");
    const widget = page.frameLocator("iframe#event-link");
    await widget.locator("#search").fill("slack");
    await widget.locator("button.item[data-title=Slack]").click();
    await page.locator("#rows tr[data-platform=slack]").waitFor();
    await widget.locator("#done").click();
    await page.locator("iframe#event-link").waitFor({ state: "detached" });
    const stored = await storedFor("bob");
    assert.deepEqual(stored.map((c) => [c.platform, c.identity]),
      [["slack", "bob"]]);
    await page.locator("#rows tr[data-platform=slack] button.delete").click();
    await page.locator("#rows tr").first().waitFor({ state: "detached" });
    assert.deepEqual(await storedFor("bob"), []);
    assert.deepEqual(pageErrors, []);
    await page.close();
  });

test("the widget honours selectedConnection and showNameInput",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await context.newPage();
    await page.goto(`${demoOrigin}/demo/?broker=${encodeURIComponent(
      broker.api)}&user=alice`);
    await page.waitForSelector("body[data-ready=true]");
    await page.evaluate(({ api, widgetUrl }) => {
      window.exports.useAuthKit({
        token: { url: api + "/api/authkit/token",
          headers: { "x-user-id": "carol" } },
        baseUrl: widgetUrl,
        selectedConnection: "Notion",
        showNameInput: true,
        appTheme: "dark",
        onSuccess: (record) => { window.linked = record; },
      }).open();
    }, { api: broker.api, widgetUrl: broker.sandbox + "/widget" });
    const widget = page.frameLocator("iframe#event-link");
    await widget.locator("body.dark[data-view=confirm]").waitFor(
      { state: "attached" });
    assert.equal(await widget.locator("#confirm-chosen strong").textContent(),
      "Notion");
    await widget.locator("#name").fill("work notes");
    await widget.locator("#connect").click();
    const record = await (await page.waitForFunction(
      () => window.linked, null, POLL)).jsonValue();
    assert.equal(record.platform, "notion");
    assert.equal(record.name, "work notes");
    assert.equal(record.identity, "carol");
    assert.equal(record.identityType, "user");
    assert.match(record.key, /^test::notion::default::[0-9a-f]{32}\|carol$/);
    for (const field of ["_id", "platformVersion", "connectionDefinitionId",
      "environment", "secretsServiceId", "settings", "throughput",
      "createdAt", "updatedAt", "updated", "version", "lastModifiedBy",
      "deleted", "tags", "active", "deprecated"]) {
      assert.ok(field in record, "LINK_SUCCESS record has " + field);
    }
    await page.close();
  });

test("a token endpoint failure reaches the page as LINK_ERROR",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const page = await context.newPage();
    await page.goto(`${demoOrigin}/demo/?broker=${encodeURIComponent(
      broker.api)}`);
    await page.waitForSelector("body[data-ready=true]");
    await page.evaluate(({ api, widgetUrl }) => {
      window.exports.useAuthKit({
        token: { url: api + "/api/authkit/token", headers: {} },  // no user
        baseUrl: widgetUrl,
        onError: (message) => { window.failed = message; },
        onClose: () => { window.exited = true; },
      }).open();
    }, { api: broker.api, widgetUrl: broker.sandbox + "/widget" });
    const message = await (await page.waitForFunction(
      () => window.failed, null, POLL)).jsonValue();
    assert.equal(typeof message, "string");
    assert.match(message, /401/);
    const widget = page.frameLocator("iframe#event-link");
    await widget.locator("#error-close").click();
    await page.waitForFunction(() => window.exited === true, null, POLL);
    await page.locator("iframe#event-link").waitFor({ state: "detached" });
    await page.close();
  });

// GET `path` exactly as written (fetch would normalise "..").
function rawGet(base, path) {
  const { hostname, port } = new URL(base);
  return new Promise((ok, fail) => {
    const req = request({ host: hostname, port, path, method: "GET",
      timeout: STEP_TIMEOUT_MS }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => ok({ status: res.statusCode,
        type: res.headers["content-type"], location: res.headers.location,
        body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout: " + path)));
    req.on("error", fail);
    req.end();
  });
}

test("the broker serves the demo's files and nothing else",
  { timeout: TEST_TIMEOUT_MS }, async () => {
    const home = await rawGet(broker.api, "/?user=bob");
    assert.equal(home.status, 302);
    assert.equal(home.location, "/demo/?user=bob");
    for (const [path, type] of [
      ["/demo/", "text/html; charset=utf-8"],
      ["/demo/demo.js", "text/javascript; charset=utf-8"],
      ["/demo/demo.css", "text/css; charset=utf-8"],
      ["/demo/node_modules/@picahq/authkit/dist/index.umd.js",
        "text/javascript; charset=utf-8"],
    ]) {
      const res = await rawGet(broker.api, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.type, type, path);
    }
    const config = JSON.parse((await rawGet(broker.api,
      "/demo/config.json")).body);
    assert.equal(config.api_base, broker.api + "/api");
    assert.equal(config.token_url, broker.api + "/api/authkit/token");
    assert.equal(config.widget_url, broker.sandbox + "/widget");
    for (const path of ["/demo/../README.md", "/demo/%2e%2e/README.md",
      "/demo/..%2fREADME.md", "/demo/%252e%252e/README.md",
      "/demo//etc/passwd", "/demo/%2fetc%2fpasswd", "/demo/.gitignore",
      "/demo/node_modules/.package-lock.json",
      "/demo/node_modules/@picahq/authkit/package.json",
      "/demo/missing.js", "/demo/index.html/x", "/demo/nothing/"]) {
      const res = await rawGet(broker.api, path);
      assert.equal(res.status, 404, path);
      assert.equal(JSON.parse(res.body).error.code, "not_found", path);
    }
    assert.equal((await rawGet(broker.api, "/demo/a%00.js")).status, 400);
  });

test("the broker refuses a preflight from an origin it does not know",
  { timeout: STEP_TIMEOUT_MS }, async () => {
    const preflight = (origin) => fetch(broker.api + "/api/authkit/token", {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST",
        "access-control-request-headers": "x-user-id" },
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
    });
    const ok = await preflight(demoOrigin);
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get("access-control-allow-origin"), demoOrigin);
    const widgetOk = await preflight(broker.sandbox);
    assert.equal(widgetOk.status, 204);
    const bad = await preflight("http://127.0.0.1:9");
    assert.equal(bad.status, 403);
  });
