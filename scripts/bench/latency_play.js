#!/usr/bin/env node
// One player run of scripts/bench_latency.py: opens a page in headless Chromium, reads
// the time stamp the bench camera draws into every frame off the picture on screen, and
// prints what it measured as JSON on stdout.
//
//   node scripts/bench/latency_play.js --url URL --seconds 40 [--delay-ms 1200]
//        [--bench-page PLAYLIST --hlsjs PATH [--hls-config JSON]] [--chromium PATH]
//        [--log-console]   (every console line of the page, e.g. hls.js's debug log, in "log")
//
// --url: the page to open (vid's player page, /?key=KEY). With --bench-page, URL is a
// path on the playlist's origin that this script answers itself (no file is served by
// the server): a bare page with one <video> and hls.js (from --hlsjs) playing PLAYLIST
// with --hls-config (default: hls.js's own defaults).
//
// The measuring code is injected before any page script runs, so every page is measured
// the same way: each frame the browser presents (requestVideoFrameCallback) is drawn
// into a canvas, the block pattern in its top rows is decoded and checked (guards +
// CRC-8), and Date.now() - time stamp is the camera-to-screen latency. The hls.js
// instance a page makes is found by wrapping window.Hls when the library defines it.
//
// playwright-core comes from tests/browser (npm ci --prefix tests/browser).
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

const { chromium } = require(path.join(__dirname, "..", "..", "tests", "browser", "node_modules", "playwright-core"));

function parseArgs(argv) {
  const o = { url: null, seconds: 40, delayMs: 0, chromium: "/usr/bin/chromium", benchPage: null, hlsjs: null,
    hlsConfig: "{}", startupTimeout: 30, logConsole: false };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--url") o.url = v();
    else if (a === "--seconds") o.seconds = Number(v());
    else if (a === "--delay-ms") o.delayMs = Number(v());
    else if (a === "--chromium") o.chromium = v();
    else if (a === "--bench-page") o.benchPage = v();
    else if (a === "--hlsjs") o.hlsjs = v();
    else if (a === "--hls-config") o.hlsConfig = v();
    else if (a === "--startup-timeout") o.startupTimeout = Number(v());
    else if (a === "--log-console") o.logConsole = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.url) throw new Error("--url is required");
  if (o.benchPage && !o.hlsjs) throw new Error("--bench-page needs --hlsjs");
  JSON.parse(o.hlsConfig);
  return o;
}

// Same flags as tests/tools/play.js: loopback only, no GPU, full-speed timers.
const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

// The frame code; scripts/bench_latency.py draws it (keep the two in step).
const CODE = { width: 1280, blocks: 57, blockWidth: 22, left: 13, height: 72, start: [1, 0, 1, 0], end: [0, 1, 0, 1], tsBits: 41 };

// Runs in the page before its own scripts.
function measure(CODE) {
  const B = (window.__bench = {
    firstFrame: null, // Date.now() of the first frame with a readable code
    samples: [], // {t, lat, ct, pdt, rate, buf}
    bad: 0, // frames presented whose code did not check out
    frames: 0,
    stalls: [], // {t, end, reason}
    events: [], // media element and hls.js events, for the start-up trace
    hls: null, // {version, config}
  });
  const T = () => Date.now();
  const ev = (kind, data) => {
    if (B.events.length < 4000) B.events.push(Object.assign({ t: T(), kind }, data || {}));
  };
  let hls = null;
  let stalledSince = null;
  let lastCt = -1;

  // ---- hls.js: wrap the class when the library assigns window.Hls ----
  let H;
  Object.defineProperty(window, "Hls", {
    configurable: true,
    enumerable: true,
    get: () => H,
    set: (Base) => {
      if (!Base || typeof Base !== "function") {
        H = Base;
        return;
      }
      H = class extends Base {
        constructor(cfg) {
          super(cfg);
          hls = this;
          hook(this, Base);
        }
      };
    },
  });

  function ranges(tr) {
    const out = [];
    if (!tr) return out;
    for (let i = 0; i < tr.length; i++) out.push([+tr.start(i).toFixed(3), +tr.end(i).toFixed(3)]);
    return out;
  }

  function fragInfo(frag, part) {
    if (!frag) return {};
    const o = { sn: frag.sn, type: frag.type, start: +(+frag.start).toFixed(3), dur: +(+frag.duration).toFixed(3) };
    if (part) Object.assign(o, { part: part.index, pstart: +(+part.start).toFixed(3), pdur: +(+part.duration).toFixed(3) });
    return o;
  }

  function hook(h, Base) {
    const E = Base.Events;
    const cfg = h.config || {};
    B.hls = { version: Base.version, lowLatencyMode: cfg.lowLatencyMode, liveSyncDuration: cfg.liveSyncDuration,
      liveSyncDurationCount: cfg.liveSyncDurationCount, liveSyncMode: cfg.liveSyncMode,
      maxLiveSyncPlaybackRate: cfg.maxLiveSyncPlaybackRate };
    h.on(E.LEVEL_LOADED, (_e, d) => {
      const x = d.details;
      if (!x) return;
      ev("level", { live: x.live, msn0: x.startSN, msn1: x.endSN, parts: x.partList ? x.partList.length : 0,
        edge: +(+x.edge).toFixed(3), age: +(+x.age).toFixed(3), td: x.targetduration, partTarget: x.partTarget,
        holdBack: x.holdBack, partHoldBack: x.partHoldBack, preload: !!x.preloadHint,
        sync: h.liveSyncPosition != null ? +h.liveSyncPosition.toFixed(3) : null });
    });
    h.on(E.FRAG_LOADING, (_e, d) => ev("loading", fragInfo(d.frag, d.part)));
    h.on(E.FRAG_LOADED, (_e, d) => ev("loaded", fragInfo(d.frag, d.part)));
    h.on(E.FRAG_PARSING_INIT_SEGMENT, (_e, d) => ev("init", {}));
    h.on(E.FRAG_PARSED, (_e, d) => ev("parsed", fragInfo(d.frag, d.part)));
    h.on(E.BUFFER_APPENDED, (_e, d) => {
      const tr = d.timeRanges || {};
      ev("appended", Object.assign(fragInfo(d.frag, d.part), { chunk: d.type,
        audio: ranges(tr.audio), video: ranges(tr.video), av: ranges(tr.audiovideo) }));
    });
    h.on(E.ERROR, (_e, d) => {
      ev("error", Object.assign({ details: d.details, fatal: !!d.fatal, ct: video() ? +video().currentTime.toFixed(3) : null,
        buffered: video() ? ranges(video().buffered) : [] }, fragInfo(d.frag, d.part)));
      if (d.details === "bufferStalledError") enterStall("hls.js bufferStalledError");
    });
  }

  const video = () => document.querySelector("video");

  function enterStall(reason) {
    if (!B.firstFrame || stalledSince !== null) return;
    const v = video();
    if (v && (v.seeking || v.paused)) return;
    stalledSince = T();
    B.stalls.push({ t: stalledSince, reason, ct: v ? +v.currentTime.toFixed(3) : null, buffered: v ? ranges(v.buffered) : [] });
  }

  function leaveStall() {
    if (stalledSince === null) return;
    B.stalls[B.stalls.length - 1].end = T();
    stalledSince = null;
  }

  // ---- reading the code off the frame on screen ----
  const crc8 = (bytes) => {
    let c = 0;
    for (const b of bytes) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
    }
    return c;
  };
  const tsBytes = (ts) => {
    const out = [];
    for (let k = 5; k >= 0; k--) out.push(Math.floor(ts / 2 ** (8 * k)) % 256);
    return out;
  };

  let canvas = null;
  let ctx = null;

  function decode(v) {
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.width = CODE.width;
      canvas.height = CODE.height;
      ctx = canvas.getContext("2d", { willReadFrequently: true });
    }
    const w = v.videoWidth;
    if (!w) return null;
    const scale = w / CODE.width;
    ctx.drawImage(v, 0, 0, w, CODE.height * scale, 0, 0, CODE.width, CODE.height);
    const px = ctx.getImageData(0, 0, CODE.width, CODE.height).data;
    const bits = [];
    const y0 = Math.floor(CODE.height / 4);
    const y1 = Math.floor((CODE.height * 3) / 4);
    for (let i = 0; i < CODE.blocks; i++) {
      const x0 = CODE.left + i * CODE.blockWidth + Math.floor(CODE.blockWidth / 4);
      const x1 = CODE.left + (i + 1) * CODE.blockWidth - Math.floor(CODE.blockWidth / 4);
      let sum = 0;
      let n = 0;
      for (let y = y0; y < y1; y += 3) {
        for (let x = x0; x < x1; x += 2) {
          sum += px[(y * CODE.width + x) * 4];
          n++;
        }
      }
      bits.push(sum / n > 128 ? 1 : 0);
    }
    const s = CODE.start.length;
    for (let i = 0; i < s; i++) if (bits[i] !== CODE.start[i]) return null;
    for (let i = 0; i < CODE.end.length; i++) if (bits[CODE.blocks - CODE.end.length + i] !== CODE.end[i]) return null;
    let ts = 0;
    for (let i = 0; i < CODE.tsBits; i++) ts = ts * 2 + bits[s + i];
    let crc = 0;
    for (let i = 0; i < 8; i++) crc = crc * 2 + bits[s + CODE.tsBits + i];
    if (crc8(tsBytes(ts)) !== crc) return null;
    return ts;
  }

  let lastRead = 0;
  function read() {
    const v = video();
    if (!v || v.readyState < 2) return;
    lastRead = T();
    let ts = null;
    try {
      ts = decode(v);
    } catch (e) {
      ev("decode-error", { message: String(e).slice(0, 200) });
    }
    B.frames++;
    if (ts === null) {
      B.bad++;
      return;
    }
    const now = T();
    if (B.firstFrame === null) {
      B.firstFrame = now;
      ev("first-frame", { ct: +v.currentTime.toFixed(3), lat: now - ts });
    }
    let pdt = null;
    if (hls && hls.playingDate && isFinite(hls.playingDate.getTime())) pdt = now - hls.playingDate.getTime();
    let buf = 0;
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.1 && v.currentTime < v.buffered.end(i)) buf = v.buffered.end(i) - v.currentTime;
    }
    B.samples.push({ t: now, lat: now - ts, ct: +v.currentTime.toFixed(3), pdt, rate: v.playbackRate, buf: +buf.toFixed(3) });
  }

  function attach(v) {
    if (v.__benchAttached) return;
    v.__benchAttached = true;
    for (const name of ["loadedmetadata", "canplay", "playing", "waiting", "seeking", "seeked", "stalled", "ratechange", "pause"]) {
      v.addEventListener(name, () => ev("media", { name, ct: +v.currentTime.toFixed(3), rate: v.playbackRate, buffered: ranges(v.buffered) }));
    }
    v.addEventListener("waiting", () => enterStall("waiting"));
    v.addEventListener("playing", leaveStall);
    v.addEventListener("timeupdate", () => {
      if (v.currentTime > lastCt && lastCt >= 0 && !v.paused && v.readyState >= 3) leaveStall();
      lastCt = v.currentTime;
    });
    if (typeof v.requestVideoFrameCallback === "function") {
      const onFrame = () => {
        read();
        v.requestVideoFrameCallback(onFrame);
      };
      v.requestVideoFrameCallback(onFrame);
    }
    // Without frame callbacks (or while none come), read every 50 ms.
    setInterval(() => {
      if (T() - lastRead > 250) read();
    }, 50);
  }

  const tryAttach = () => {
    const v = video();
    if (v) attach(v);
    else setTimeout(tryAttach, 20);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", tryAttach);
  else tryAttach();
}

function benchPageHtml(src, config) {
  return `<!doctype html><meta charset="utf-8"><title>latency bench</title>
<body style="margin:0;background:#000"><video id="video" muted autoplay playsinline style="width:1280px;height:720px"></video>
<script src="hls.min.js"></script>
<script>
"use strict";
const video = document.getElementById("video");
const h = new Hls(${JSON.stringify(config)});
h.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
h.on(Hls.Events.ERROR, (_e, d) => {
  if (!d.fatal) return;
  if (d.type === Hls.ErrorTypes.MEDIA_ERROR) h.recoverMediaError(); else h.startLoad();
});
h.loadSource(${JSON.stringify(src)});
h.attachMedia(video);
</script>`;
}

async function main() {
  const opt = parseArgs(process.argv);
  const out = { url: opt.url, browser: null, opened: null, result: null, requests: [], console: [], log: [], pageErrors: [],
    error: null };
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "vid-latency-"));
  let context = null;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opt.chromium,
      headless: true,
      args: FLAGS,
      viewport: { width: 1280, height: 800 },
      deviceScaleFactor: 1,
    });
    out.browser = context.browser() ? context.browser().version() : null;
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => {
      if (opt.logConsole && out.log.length < 40000) out.log.push({ t: Date.now(), text: m.text().slice(0, 400) });
      if ((m.type() === "error" || m.type() === "warning") && out.console.length < 200) out.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
    });
    page.on("pageerror", (e) => out.pageErrors.push(String(e).slice(0, 500)));
    page.on("requestfinished", async (r) => {
      const u = new URL(r.url());
      if (!/\.(m3u8|m4s|mp4|ts)$/.test(u.pathname) || out.requests.length >= 5000) return;
      const t = r.timing();
      const resp = await r.response().catch(() => null);
      out.requests.push({ start: Math.round(t.startTime), end: Math.round(t.startTime + t.responseEnd), url: u.pathname + u.search,
        status: resp ? resp.status() : null });
    });
    await page.addInitScript(measure, CODE);
    if (opt.benchPage) {
      const pageUrl = new URL(opt.url);
      const html = benchPageHtml(opt.benchPage, JSON.parse(opt.hlsConfig));
      const lib = fs.readFileSync(opt.hlsjs);
      await page.route(pageUrl.href, (route) => route.fulfill({ status: 200, contentType: "text/html", body: html }));
      await page.route(new URL("hls.min.js", pageUrl).href, (route) =>
        route.fulfill({ status: 200, contentType: "text/javascript", body: lib }));
    }
    // The spread start: the page opens at a random phase of the stream's segments.
    await page.waitForTimeout(opt.delayMs);
    out.opened = Date.now();
    await page.goto(opt.url, { waitUntil: "load", timeout: opt.startupTimeout * 1000 });
    await page.waitForTimeout(Math.max(0, out.opened + opt.seconds * 1000 - Date.now()));
    out.result = await page.evaluate(() => JSON.parse(JSON.stringify(window.__bench)));
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e).slice(0, 2000);
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
