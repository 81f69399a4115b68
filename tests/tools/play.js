#!/usr/bin/env node
// Plays a vid stream on the player page in headless Chromium and reports what the page
// measured (window.vidStats), as JSON on stdout.
//
//   node tests/tools/play.js --url http://127.0.0.1:PORT/?key=KEY --seconds 30 \
//        --screenshot out.png [--startup-timeout 60] [--chromium /usr/bin/chromium]
//   node tests/tools/play.js --url http://127.0.0.1:PORT/ --list-key KEY
//        (only waits for KEY's row in the page's stream list and reports the list's text)
//   --no-hlsjs: answer 404 for vendor/hls.min.js, so the page uses the browser's own HLS
//
// playwright-core comes from tests/browser (npm ci --prefix tests/browser); the browser
// is the system's Chromium: playwright never downloads one here.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

const { chromium } = require(path.join(__dirname, "..", "browser", "node_modules", "playwright-core"));

function parseArgs(argv) {
  const o = { seconds: 30, startupTimeout: 60, chromium: "/usr/bin/chromium", screenshot: null, url: null, listKey: null, noHlsjs: false };
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
    else if (a === "--no-hlsjs") o.noHlsjs = true;
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
    requests: [], // the last MAX_REQUESTS /live/ requests: {t, url, status, ms, size}
    screenshot: null,
    videoBox: null,
    list: null, // --list-key: the rows of the stream table, as text per cell
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
      if (!u.pathname.startsWith("/live/")) return;
      const resp = await r.response().catch(() => null);
      const t = r.timing();
      let size = null;
      try {
        size = (await r.sizes()).responseBodySize;
      } catch (_) {}
      pushRequest({ t: Math.round(t.startTime + t.responseEnd), url: u.pathname + u.search, status: resp ? resp.status() : null,
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
    if (opt.listKey) {
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
          };
        });
      out.samples.push(await sample());
      const end = Date.now() + opt.seconds * 1000;
      while (Date.now() < end) {
        await page.waitForTimeout(Math.min(1000, Math.max(0, end - Date.now())));
        out.samples.push(await sample());
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
