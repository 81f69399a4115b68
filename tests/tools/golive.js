#!/usr/bin/env node
// Publishes from the player page's "Go live from this browser" in headless Chromium with
// a fake camera and microphone, keeps the stream live, then stops it; reports
// window.vidPublish and the page's console as JSON on stdout.
//
//   node tests/tools/golive.js --url http://127.0.0.1:PORT/ --key KEY --seconds 20
//        [--chromium /usr/bin/chromium] [--token TOKEN] [--no-stop]
"use strict";

const path = require("path");
const { chromium } = require(path.join(__dirname, "..", "browser", "node_modules", "playwright-core"));

function parseArgs(argv) {
  const o = { url: null, key: "browser", seconds: 20, chromium: "/usr/bin/chromium", token: "", stop: true };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === "--url") o.url = v();
    else if (a === "--key") o.key = v();
    else if (a === "--seconds") o.seconds = Number(v());
    else if (a === "--chromium") o.chromium = v();
    else if (a === "--token") o.token = v();
    else if (a === "--no-stop") o.stop = false;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url) throw new Error("--url is required");
  return o;
}

async function main() {
  const opt = parseArgs(process.argv);
  const out = { states: [], publish: null, console: [], pageErrors: [], error: null, offerCodecs: null };
  const browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    ],
  });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => out.console.length < 100 && out.console.push(m.text()));
    page.on("pageerror", (e) => out.pageErrors.push(String(e)));
    await page.goto(opt.url);
    await page.fill("#golive-key", opt.key);
    if (opt.token) await page.fill("#golive-token", opt.token);
    out.offerCodecs = await page.evaluate(() =>
      (RTCRtpSender.getCapabilities("video") || { codecs: [] }).codecs.map((c) => c.mimeType).join(" "));
    await page.click("#golive-start");
    const t0 = Date.now();
    let last = null;
    while (Date.now() - t0 < 20000) {
      const s = await page.evaluate(() => window.vidPublish.state);
      if (s !== last) out.states.push(s);
      last = s;
      if (s === "live" || s === "failed" || (await page.evaluate(() => window.vidPublish.error))) break;
      await page.waitForTimeout(100);
    }
    process.stderr.write(`golive.js: ${last}\n`);
    if (last === "live") await page.waitForTimeout(opt.seconds * 1000);
    out.publish = await page.evaluate(() => Object.assign({}, window.vidPublish));
    if (opt.stop && last === "live") {
      await page.click("#golive-stop");
      await page.waitForTimeout(500);
      out.states.push(await page.evaluate(() => window.vidPublish.state));
    }
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
  process.exit(1);
});
