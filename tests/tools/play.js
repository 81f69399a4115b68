#!/usr/bin/env node
// Plays a vid stream on the player page in headless Chromium and reports what the page
// measured (window.vidStats), as JSON on stdout.
//
//   node tests/tools/play.js --url http://127.0.0.1:PORT/?key=KEY --seconds 30 \
//        --screenshot out.png [--startup-timeout 60] [--chromium /usr/bin/chromium]
//   node tests/tools/play.js --url http://127.0.0.1:PORT/ --list-key KEY
//        (only waits for KEY's row in the page's stream list and reports the list's text)
//   node tests/tools/play.js --url http://127.0.0.1:PORT/ --list-recording KEY
//        (waits for KEY's row in the page's recordings list; reports its rows and links)
//   --no-hlsjs: answer 404 for vendor/hls.min.js, so the page uses the browser's own HLS
//   --at SECONDS:EXPR (repeatable): evaluate EXPR in the page SECONDS after playback
//        started, e.g. --at 8:'window.vidControl.capLevel(0)'; reported in "actions"
//   --mse-type TYPE (repeatable): report MediaSource.isTypeSupported(TYPE) in "mseTypes"
//        once the page loaded; when one is false, stop there ("unsupported" says which)
//   --load-only SECONDS: load the page, wait SECONDS and report vidStats without waiting
//        for playback (for pages that are meant not to play)
//
// playwright-core comes from tests/browser (npm ci --prefix tests/browser); the browser
// is the system's Chromium: playwright never downloads one here.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

const { chromium } = require(path.join(__dirname, "..", "browser", "node_modules", "playwright-core"));

function parseArgs(argv) {
  const o = { seconds: 30, startupTimeout: 60, chromium: "/usr/bin/chromium", screenshot: null, url: null, listKey: null, noHlsjs: false, at: [], mseTypes: [], loadOnly: null };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--url") o.url = v();
    else if (a === "--seconds") o.seconds = Number(v());
    else if (a === "--startup-timeout") o.startupTimeout = Number(v());
    else if (a === "--screenshot") o.screenshot = v();
    else if (a === "--chromium") o.chromium = v();
    else if (a === "--list-key") o.listKey = v();
    else if (a === "--list-recording") o.listRecording = v();
    else if (a === "--no-hlsjs") o.noHlsjs = true;
    else if (a === "--at") {
      const m = /^([0-9]+(?:\.[0-9]+)?):([\s\S]+)$/.exec(v());
      if (!m) throw new Error("--at wants SECONDS:EXPR");
      o.at.push({ at: Number(m[1]), expr: m[2] });
    } else if (a === "--mse-type") o.mseTypes.push(v());
    else if (a === "--load-only") o.loadOnly = Number(v());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url) throw new Error("--url is required");
  return o;
}

const MAX_REQUESTS = 3000;

// The flags this machine needs (no network beyond loopback, no GPU, root in a sandbox).
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
  // Keep timers and the renderer at full speed in a page nobody looks at.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

async function main() {
  const opt = parseArgs(process.argv);
  const out = {
    url: opt.url,
    browser: null,
    startupSeconds: null,
    samples: [], // one a second while playing: {t, currentTime, playing, stalls, latency, wall, buffer}
    stats: null, // window.vidStats at the end
    console: [], // console errors and warnings of the page
    pageErrors: [],
    failedRequests: [],
    requests: [], // the last MAX_REQUESTS /live/ and /ts/ requests: {t, url, status, ms, size}
    screenshot: null,
    videoBox: null,
    list: null, // --list-key: the rows of the stream table, as text per cell
    actions: [], // --at: {at, expr, t, currentTime, result, error}
    mseTypes: null, // --mse-type: {TYPE: isTypeSupported}
    unsupported: null, // --mse-type: the first TYPE that is not supported
    error: null,
  };
  const pushRequest = (r) => {
    out.requests.push(r);
    if (out.requests.length > MAX_REQUESTS) out.requests.shift();
  };
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "vid-chromium-"));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opt.chromium,
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 900 },
      deviceScaleFactor: 1,
    });
    out.browser = context.browser() ? context.browser().version() : null;
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") out.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
    });
    page.on("pageerror", (e) => out.pageErrors.push(String(e).slice(0, 500)));
    // Every media and playlist request with its timing: what to look at when a test fails.
    page.on("requestfinished", async (r) => {
      const u = new URL(r.url());
      if (!/^\/(live|ts)\//.test(u.pathname)) return;
      const resp = await r.response().catch(() => null);
      const t = r.timing();
      let size = null;
      try {
        size = (await r.sizes()).responseBodySize;
      } catch (_) {}
      pushRequest({ t: Math.round(t.startTime + t.responseEnd), host: u.host, url: u.pathname + u.search, status: resp ? resp.status() : null,
        ms: Math.round(t.responseEnd), size });
    });
    page.on("requestfailed", (r) => {
      // Aborted requests are normal for hls.js (it cancels what it no longer needs).
      out.failedRequests.push(`${r.url()} ${r.failure() ? r.failure().errorText : ""}`.slice(0, 300));
    });

    if (opt.noHlsjs) await page.route("**/vendor/hls.min.js", (route) => route.fulfill({ status: 404, body: "" }));
    const t0 = Date.now();
    await page.goto(opt.url, { waitUntil: "load", timeout: opt.startupTimeout * 1000 });
    if (!out.browser) out.browser = await page.evaluate(() => navigator.userAgent);
    if (opt.mseTypes.length) {
      out.mseTypes = await page.evaluate((types) => {
        const ok = {};
        for (const t of types) ok[t] = !!(window.MediaSource && MediaSource.isTypeSupported(t));
        return ok;
      }, opt.mseTypes);
      out.unsupported = opt.mseTypes.find((t) => !out.mseTypes[t]) || null;
    }
    if (out.unsupported) {
      // nothing to play: the caller skips
    } else if (opt.loadOnly !== null) {
      await page.waitForTimeout(opt.loadOnly * 1000);
      out.stats = await page.evaluate(() => (window.vidStats ? JSON.parse(JSON.stringify(window.vidStats)) : null));
      out.playerHidden = await page.locator("#player").isHidden();
      out.errorText = await page.locator("#s-error").textContent();
    } else if (opt.listRecording) {
      await page.waitForSelector(`#recordings tr[data-key="${opt.listRecording}"]`, { timeout: opt.startupTimeout * 1000 });
      out.startupSeconds = (Date.now() - t0) / 1000;
      out.list = await page.$$eval("#recordings tr", (rows) => rows.map((r) => Array.from(r.cells, (c) => c.textContent)));
      out.links = await page.$$eval("#recordings tr a", (as) => as.map((a) => a.href));
    } else if (opt.listKey) {
      await page.waitForSelector(`#streams tr[data-key="${opt.listKey}"]`, { timeout: opt.startupTimeout * 1000 });
      out.startupSeconds = (Date.now() - t0) / 1000;
      out.list = await page.$$eval("#streams tr", (rows) => rows.map((r) => Array.from(r.cells, (c) => c.textContent)));
      out.listStatus = await page.textContent("#list-status");
    } else {
      await page.waitForFunction(() => window.vidStats && window.vidStats.started !== null && window.vidStats.playing, null, {
        timeout: opt.startupTimeout * 1000,
        polling: 200,
      });
      out.startupSeconds = (Date.now() - t0) / 1000;
      process.stderr.write("play.js: playing\n"); // a cue for tests that act during playback

      const sample = () =>
        page.evaluate(() => {
          const s = window.vidStats;
          return {
            t: Date.now(),
            currentTime: s.currentTime,
            playing: s.playing,
            stalls: s.stalls,
            latency: s.latencyNow,
            wall: s.wallLatencyNow,
            buffer: s.buffer,
            level: s.level ? s.level.index : null,
            resolution: s.level ? s.level.resolution : null,
          };
        });
      out.samples.push(await sample());
      const started = Date.now();
      const end = started + opt.seconds * 1000;
      const pending = opt.at.slice().sort((a, b) => a.at - b.at);
      let nextSample = started + 1000;
      while (Date.now() < end) {
        const nextAction = pending.length ? started + pending[0].at * 1000 : Infinity;
        await page.waitForTimeout(Math.max(0, Math.min(nextSample, nextAction, end) - Date.now()));
        while (pending.length && Date.now() >= started + pending[0].at * 1000) {
          const a = pending.shift();
          const done = { at: a.at, expr: a.expr, t: Date.now(), currentTime: null, result: null, error: null };
          try {
            const r = await page.evaluate(
              (expr) => ({ result: JSON.parse(JSON.stringify((0, eval)(expr)) ?? "null"), currentTime: window.vidStats.currentTime }),
              a.expr);
            done.result = r.result;
            done.currentTime = r.currentTime;
          } catch (e) {
            done.error = String(e).slice(0, 500);
          }
          out.actions.push(done);
          process.stderr.write(`play.js: at ${a.at}: ${a.expr}\n`);
        }
        if (Date.now() >= nextSample || Date.now() >= end) {
          out.samples.push(await sample());
          nextSample = Date.now() + 1000;
        }
      }
      out.stats = await page.evaluate(() => JSON.parse(JSON.stringify(window.vidStats)));
      if (opt.screenshot) {
        await page.screenshot({ path: opt.screenshot });
        out.screenshot = opt.screenshot;
        out.videoBox = await page.locator("#video").boundingBox();
      }
    }
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e).slice(0, 2000);
    try {
      const page = context && context.pages()[0];
      if (page) {
        out.stats = await page.evaluate(() => (window.vidStats ? JSON.parse(JSON.stringify(window.vidStats)) : null));
        if (opt.screenshot) {
          await page.screenshot({ path: opt.screenshot });
          out.screenshot = opt.screenshot;
        }
      }
    } catch (_) {
      // the page is gone; report what we have
    }
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exitCode = out.error ? 1 : 0;
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }) + "\n");
  process.exitCode = 2;
});
