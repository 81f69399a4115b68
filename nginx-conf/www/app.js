// vid player page: the list of live streams (from /streams.json) and a low-latency
// player for the selected one (hls.js, or the browser's own HLS where hls.js can't run).
// No build step, no framework. Tests read `window.vidStats` (see the shape below).
(function () {
  "use strict";

  const KEY_RE = /^[A-Za-z0-9_-]{1,64}$/; // the stream keys vid accepts
  const LIST_EVERY_MS = 2000;
  const SAMPLE_EVERY_MS = 250;
  const MAX_SAMPLES = 4800; // 20 minutes of samples, then the oldest go
  const MAX_EVENTS = 200; // errors and stalls kept
  const RETRY_MS = 2000;
  const MAX_SRC_LEN = 2048; // longest ?src= playlist URL accepted

  const $ = (id) => document.getElementById(id);
  const video = $("video");

  // Everything a test (or a curious person in the console) wants to know. Times `t` are
  // wall-clock milliseconds (Date.now()); durations are seconds.
  const stats = {
    key: null,
    src: null, // the playlist played: /live/KEY/index.m3u8, or the ?src= URL (absolute)
    engine: null, // "hls.js x.y.z" | "native"
    playing: false, // playing right now: not paused, not stalled, not ended
    started: null, // t when the playhead first moved (see "timeupdate" below)
    currentTime: 0,
    latency: [], // samples {t, latency, wall, buffer, currentTime}
    latencyNow: null, // hls.js: hls.latency; native: wall latency (below)
    wallLatencyNow: null, // now - program date time of the frame shown
    buffer: 0, // seconds buffered ahead of the playhead
    buffered: [], // video.buffered as [start, end] pairs
    seekable: [], // video.seekable as [start, end] pairs
    duration: null,
    playbackRate: 1,
    level: null,
    levels: [], // hls.js: the variants {index, width, height, bitrate}, lowest bit rate first
    levelSwitches: [], // hls.js LEVEL_SWITCHED: {t, level, width, height, bitrate}
    videoSizes: [], // the decoded picture size when it changes: {t, width, height}
    autoLevelCapping: -1, // hls.js: the highest level ABR may pick (-1: none)
    controls: [], // window.vidControl calls: {t, action, value}
    stalls: 0, // times playback stopped for want of data after it had started
    stallEvents: [], // {t, currentTime, reason}
    stalledSeconds: 0,
    seeks: 0,
    errors: [], // {t, type, details, fatal}
    fatalErrors: 0,
    ended: false,
  };
  window.vidStats = stats;

  let hls = null;
  let retryTimer = null;
  let stalledSince = null; // Date.now() while stalled
  let lastTime = -1;
  let playOrigin = null; // currentTime at the first "playing" event
  let streams = [];
  // Ingest bit rate history per stream, from the status API: {t, bps} samples.
  const ingest = new Map();
  const CHART_SECONDS = 120;
  const STALL_SECONDS = 3; // a live stream whose last frame is older shows as stalled
  let source = null; // the playlist URL being played

  // ---- helpers -----------------------------------------------------------------------
  function pushBounded(arr, item, max) {
    arr.push(item);
    if (arr.length > max) arr.splice(0, arr.length - max);
  }

  function fmtSeconds(s) {
    return s == null || !isFinite(s) ? "–" : s.toFixed(2) + " s";
  }

  function fmtRate(bps) {
    if (!bps) return "–";
    if (bps >= 1e6) return (bps / 1e6).toFixed(2) + " Mbit/s";
    return Math.round(bps / 1e3) + " kbit/s";
  }

  function fmtUptime(ms) {
    if (!isFinite(ms) || ms < 0) return "–";
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  function bufferAhead() {
    const b = video.buffered;
    const t = video.currentTime;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t < b.end(i)) return b.end(i) - t;
    }
    return 0;
  }

  function ranges(b = video.buffered) {
    const out = [];
    for (let i = 0; i < b.length; i++) out.push([+b.start(i).toFixed(3), +b.end(i).toFixed(3)]);
    return out;
  }

  function recordError(type, details, fatal) {
    pushBounded(stats.errors, { t: Date.now(), type: String(type), details: String(details), fatal: !!fatal }, MAX_EVENTS);
    if (fatal) stats.fatalErrors++;
    if (fatal) {
      const p = $("s-error");
      p.textContent = `${type}: ${details}`;
      p.hidden = false;
    }
  }

  // ---- stalls ------------------------------------------------------------------------
  // A stall is playback stopping for want of data once it had started; seeks (hls.js
  // jumping to the live edge) are counted apart.
  function enterStall(reason) {
    if (!stats.started || stalledSince !== null || video.seeking || video.paused || video.ended) return;
    stalledSince = Date.now();
    stats.stalls++;
    pushBounded(stats.stallEvents, { t: stalledSince, currentTime: video.currentTime, reason, buffered: ranges() }, MAX_EVENTS);
  }

  function leaveStall() {
    if (stalledSince === null) return;
    stats.stalledSeconds += (Date.now() - stalledSince) / 1000;
    const last = stats.stallEvents[stats.stallEvents.length - 1];
    if (last && last.t === stalledSince) last.seconds = (Date.now() - stalledSince) / 1000;
    stalledSince = null;
  }

  // Playback has started once the playhead moved after the first "playing" event: a
  // player may still settle on its start position (and wait for it) before that.
  video.addEventListener("playing", () => {
    if (playOrigin === null) playOrigin = video.currentTime;
    leaveStall();
  });
  video.addEventListener("timeupdate", () => {
    if (stats.started === null && playOrigin !== null && !video.seeking && Math.abs(video.currentTime - playOrigin) >= 0.2) {
      stats.started = Date.now();
    }
  });
  video.addEventListener("waiting", () => enterStall("waiting"));
  video.addEventListener("seeking", () => stats.seeks++);
  video.addEventListener("ended", () => {
    stats.ended = true;
  });
  video.addEventListener("resize", () => {
    if (video.videoWidth) pushBounded(stats.videoSizes, { t: Date.now(), width: video.videoWidth, height: video.videoHeight }, MAX_EVENTS);
  });
  video.addEventListener("error", () => {
    const e = video.error;
    if (e && !hls) recordError("media", `code ${e.code}: ${e.message || ""}`, true);
  });

  // ---- sampling ----------------------------------------------------------------------
  function nativeWallLatency() {
    if (typeof video.getStartDate !== "function") return null;
    const start = video.getStartDate().getTime();
    if (!isFinite(start) || start <= 0) return null;
    return (Date.now() - (start + video.currentTime * 1000)) / 1000;
  }

  // Without a start date (some browsers lack getStartDate): distance to the live edge.
  function nativeEdgeLatency() {
    const s = video.seekable;
    if (!s || !s.length) return null;
    const d = s.end(s.length - 1) - video.currentTime;
    return isFinite(d) && d >= 0 ? d : null;
  }

  function sample() {
    if (!stats.key) return;
    const now = Date.now();
    const t = video.currentTime;
    // Progress clears a stall that the element itself never reported as over.
    if (t > lastTime && lastTime >= 0 && !video.paused && video.readyState >= 3) leaveStall();
    lastTime = t;

    let latency = null;
    let wall = null;
    if (hls) {
      latency = hls.latency > 0 ? hls.latency : null;
      const pd = hls.playingDate;
      if (pd && isFinite(pd.getTime())) wall = (now - pd.getTime()) / 1000;
    } else {
      wall = nativeWallLatency();
      latency = wall !== null ? wall : nativeEdgeLatency();
    }
    stats.currentTime = t;
    stats.buffer = bufferAhead();
    stats.latencyNow = latency;
    stats.wallLatencyNow = wall;
    stats.playing = !video.paused && !video.ended && stalledSince === null && video.readyState >= 3;
    stats.level = currentLevel();
    stats.buffered = ranges();
    stats.seekable = ranges(video.seekable);
    stats.duration = video.duration;
    stats.playbackRate = video.playbackRate;
    if (hls) catchUp(latency, stats.buffer);
    if (stats.playing && latency !== null) {
      pushBounded(stats.latency, { t: now, latency, wall, buffer: stats.buffer, currentTime: t }, MAX_SAMPLES);
    }
    render();
  }

  // Gentle catch-up (hls.js only): play at CATCH_UP_RATE while the latency is more than
  // CATCH_UP_ABOVE over hls.js's target (PART-HOLD-BACK plus what stalls added) and more
  // than CATCH_UP_MIN_BUFFER is buffered; back to 1x once within CATCH_UP_WITHIN of it or
  // when the buffer runs thin. 1.1x wins back 0.5 s in 5 s and is hard to notice.
  const CATCH_UP_RATE = 1.1;
  const CATCH_UP_ABOVE = 0.15;
  const CATCH_UP_WITHIN = 0.05;
  const CATCH_UP_MIN_BUFFER = 0.3;
  function catchUp(latency, ahead) {
    if (!hls || !stats.playing || video.seeking) return;
    const target = hls.targetLatency;
    if (!(target > 0) || latency === null) return;
    const behind = latency - target;
    let rate = video.playbackRate;
    if (ahead < CATCH_UP_MIN_BUFFER || behind < CATCH_UP_WITHIN) rate = 1;
    else if (behind > CATCH_UP_ABOVE) rate = CATCH_UP_RATE;
    if (rate !== video.playbackRate) video.playbackRate = rate;
  }

  function currentLevel() {
    if (hls && hls.levels && hls.currentLevel >= 0) {
      const l = hls.levels[hls.currentLevel];
      if (l) {
        const res = l.width && l.height ? `${l.width}x${l.height}` : `${video.videoWidth}x${video.videoHeight}`;
        return { index: hls.currentLevel, resolution: res, bitrate: l.bitrate || null };
      }
    }
    if (video.videoWidth) return { index: 0, resolution: `${video.videoWidth}x${video.videoHeight}`, bitrate: null };
    return null;
  }

  function render() {
    $("s-key").textContent = stats.key || "–";
    let state = "loading";
    if (stats.ended) state = "ended";
    else if (stalledSince !== null) state = "stalled";
    else if (stats.playing) state = "playing";
    else if (video.paused && stats.started) state = "paused";
    $("s-state").textContent = state;
    $("s-latency").textContent =
      fmtSeconds(stats.latencyNow) + (hls && stats.wallLatencyNow != null ? ` (wall clock ${fmtSeconds(stats.wallLatencyNow)})` : "");
    $("s-buffer").textContent = fmtSeconds(stats.buffer);
    $("s-stalls").textContent = String(stats.stalls);
    const l = stats.level;
    $("s-level").textContent = l ? `${l.index} · ${l.resolution}${l.bitrate ? " · " + fmtRate(l.bitrate) : ""}` : "–";
    $("s-engine").textContent = stats.engine || "–";
    // DVR (a long live window, e.g. /dvr/KEY/index.m3u8): the seek bar goes back to the
    // start of the broadcast; this button returns to the live edge.
    const edge = hls && hls.latestLevelDetails && hls.latestLevelDetails.live ? hls.liveSyncPosition : null;
    $("to-live").hidden = !(edge != null && edge - video.currentTime > 6);
  }

  $("to-live").addEventListener("click", () => {
    if (hls && hls.liveSyncPosition != null) video.currentTime = hls.liveSyncPosition;
  });

  // ---- playback ----------------------------------------------------------------------
  function playlistUrl(key) {
    return `/live/${encodeURIComponent(key)}/index.m3u8`;
  }

  // ?src=URL plays any HLS playlist (a multivariant one for ABR, or one on a CDN edge):
  // relative to the page or absolute http(s), ending in .m3u8. Returns the absolute URL,
  // or null when it is not acceptable.
  function checkSrc(src) {
    if (typeof src !== "string" || !src || src.length > MAX_SRC_LEN) return null;
    let u;
    try {
      u = new URL(src, location.href);
    } catch (_) {
      return null;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") return null;
    if (u.username || u.password || !/\.m3u8$/.test(u.pathname)) return null;
    return u.href;
  }

  // The stream key a playlist URL names (/live/KEY/...), for the stats; "" if none.
  function keyOfSrc(src) {
    const m = /\/live\/([A-Za-z0-9_-]{1,64})\/[^/]*$/.exec(new URL(src).pathname);
    return m ? m[1] : "";
  }

  function tryPlay() {
    const p = video.play();
    if (p && p.catch) p.catch((e) => recordError("autoplay", e && e.name ? e.name : e, false));
  }

  function stop() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute("src");
    video.load();
  }

  function resetStats(key) {
    Object.assign(stats, {
      key, src: null, engine: null, playing: false, started: null, currentTime: 0, latency: [], latencyNow: null,
      wallLatencyNow: null, buffer: 0, buffered: [], seekable: [], duration: null, playbackRate: 1, level: null, levels: [], levelSwitches: [], videoSizes: [], autoLevelCapping: -1, controls: [], stalls: 0, stallEvents: [], stalledSeconds: 0,
      seeks: 0, errors: [], fatalErrors: 0, ended: false,
    });
    stalledSince = null;
    lastTime = -1;
    playOrigin = null;
    $("s-error").hidden = true;
  }

  function startHls(key, src) {
    // Low latency, measured with scripts/bench_latency.py (README "Latency"):
    // - lowLatencyMode: parts, preload hints and blocking reloads; playback starts at the
    //   live edge minus the playlist's PART-HOLD-BACK (3 parts) and aims to stay there.
    // - liveSyncOnStallIncrease 0.2: each stall raises that target by 200 ms (hls.js's
    //   default is 1 s a stall, up to a target duration), so one hiccup does not cost a
    //   second of latency for the rest of the session.
    // - maxLiveSyncPlaybackRate 1: hls.js's own speed-up only acts with more than a second
    //   buffered, which a player at PART-HOLD-BACK never has, so it never caught up the
    //   time lost starting or stalling; catchUp() below does that instead.
    // - maxFragLookUpTolerance 0.05: below half a part (hls.js's 0.25 s spans more than a
    //   whole 100 or 200 ms part, so a lookup near a segment's end could pass over its
    //   last part).
    const h = new Hls({
      lowLatencyMode: true,
      enableWorker: true,
      backBufferLength: 30,
      liveSyncOnStallIncrease: 0.2,
      maxLiveSyncPlaybackRate: 1,
      maxFragLookUpTolerance: 0.05,
    });
    hls = h;
    stats.engine = `hls.js ${Hls.version}`;
    h.on(Hls.Events.MANIFEST_PARSED, (_ev, data) => {
      if (h !== hls) return;
      stats.levels = (data.levels || []).map((l, index) => ({ index, width: l.width || null, height: l.height || null, bitrate: l.bitrate || null }));
      stats.autoLevelCapping = h.autoLevelCapping;
      tryPlay();
    });
    h.on(Hls.Events.LEVEL_SWITCHED, (_ev, data) => {
      if (h !== hls) return;
      const l = h.levels && h.levels[data.level];
      pushBounded(stats.levelSwitches, { t: Date.now(), level: data.level, width: l ? l.width || null : null,
        height: l ? l.height || null : null, bitrate: l ? l.bitrate || null : null }, MAX_EVENTS);
    });
    h.on(Hls.Events.ERROR, (_ev, data) => {
      if (h !== hls) return;
      if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) enterStall("hls.js buffer stalled");
      recordError(data.type, data.details, data.fatal);
      if (!data.fatal) return;
      // Recover the way hls.js documents it; a stream that is not (yet) there is retried.
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        h.recoverMediaError();
      } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR && data.details !== Hls.ErrorDetails.MANIFEST_LOAD_ERROR) {
        h.startLoad();
      } else {
        h.destroy();
        hls = null;
        retryTimer = setTimeout(() => play(key, false, src), RETRY_MS);
      }
    });
    h.loadSource(src);
    h.attachMedia(video);
  }

  function startNative(src) {
    stats.engine = "native";
    video.src = src;
    tryPlay();
  }

  // key: the stream (a label when src is given); src: an absolute playlist URL from
  // checkSrc(), or null for the key's own playlist.
  function play(key, fresh = true, src = null) {
    stop();
    if (fresh) resetStats(key);
    source = src || playlistUrl(key);
    stats.src = new URL(source, location.href).href;
    $("player").hidden = false;
    video.muted = true;
    if (window.Hls && Hls.isSupported()) startHls(key, source);
    else if (video.canPlayType("application/vnd.apple.mpegurl")) startNative(source);
    else recordError("unsupported", "this browser plays neither hls.js (MSE) nor HLS natively", true);
    markSelected();
    render();
  }

  function select(key, push) {
    if (!KEY_RE.test(key) || (key === stats.key && source === playlistUrl(key))) return;
    if (push) history.pushState({ key }, "", `?key=${encodeURIComponent(key)}`);
    play(key);
  }

  // ---- the stream list ----------------------------------------------------------------
  function markSelected() {
    for (const tr of $("streams").children) tr.classList.toggle("selected", tr.dataset.key === stats.key);
  }

  // The status of a stream in a few words, from the status API (`state`, `status`).
  function statusText(s) {
    const st = s.status || {};
    if (s.state === "ended" || !s.live) return "ended";
    if (st.last_frame_age != null && st.last_frame_age > STALL_SECONDS) return `stalled ${Math.round(st.last_frame_age)} s`;
    return "live";
  }

  function recordIngest(list) {
    const now = Date.now();
    for (const s of list) {
      if (!ingest.has(s.key)) ingest.set(s.key, []);
      const h = ingest.get(s.key);
      h.push({ t: now, bps: (s.status && s.live) ? s.status.ingest_bitrate || 0 : 0 });
      while (h.length && now - h[0].t > CHART_SECONDS * 1000) h.shift();
    }
    for (const k of ingest.keys()) if (!list.some((s) => s.key === k)) ingest.delete(k);
  }

  // A small SVG chart of the ingest bit rate over the last CHART_SECONDS, scaled to its
  // own peak (labelled).
  function ingestChart(key) {
    const NS = "http://www.w3.org/2000/svg";
    const w = 180, h = 36;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("class", "chart");
    const hist = ingest.get(key) || [];
    const now = Date.now();
    const peak = Math.max(1, ...hist.map((p) => p.bps));
    const x = (t) => w - ((now - t) / (CHART_SECONDS * 1000)) * w;
    const y = (b) => h - 2 - (b / peak) * (h - 12);
    if (hist.length > 1) {
      const pts = hist.map((p) => `${x(p.t).toFixed(1)},${y(p.bps).toFixed(1)}`);
      const area = document.createElementNS(NS, "polygon");
      area.setAttribute("points", `${x(hist[0].t).toFixed(1)},${h} ${pts.join(" ")} ${x(hist[hist.length - 1].t).toFixed(1)},${h}`);
      area.setAttribute("class", "chart-area");
      const line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", "chart-line");
      svg.append(area, line);
    }
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", 2);
    label.setAttribute("y", 9);
    label.setAttribute("class", "chart-label");
    label.textContent = hist.length ? `${fmtRate(hist[hist.length - 1].bps)} (peak ${fmtRate(peak)})` : "–";
    svg.append(label);
    return svg;
  }

  function renderList() {
    const body = $("streams");
    const now = Date.now();
    const rows = streams.map((s) => {
      const tr = document.createElement("tr");
      tr.dataset.key = s.key;
      const a = document.createElement("a");
      a.href = `?key=${encodeURIComponent(s.key)}`;
      a.textContent = s.key;
      const cells = [
        a,
        s.codecs || [s.video_codec, s.audio_codec].filter(Boolean).join(",") || "–",
        s.width && s.height ? `${s.width}x${s.height}${s.frame_rate ? " @ " + Math.round(s.frame_rate * 100) / 100 : ""}` : "–",
        fmtRate(s.average_bandwidth || s.bandwidth),
        s.live ? fmtUptime(now - Date.parse(s.started)) : "ended",
        statusText(s),
        s.status ? String(s.status.viewers) : "–",
        ingestChart(s.key),
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        if (typeof c === "string") td.textContent = c;
        else td.appendChild(c);
        tr.appendChild(td);
      }
      if (s.bandwidth) tr.cells[3].title = `peak ${fmtRate(s.bandwidth)}`;
      const pub = (s.status && s.status.publisher) || {};
      tr.cells[5].title = [pub.address && `publisher ${pub.address}`, pub.software,
        s.status && s.status.last_frame_age != null && `last frame ${s.status.last_frame_age.toFixed(1)} s ago`]
        .filter(Boolean).join("\n");
      tr.cells[5].className = "state-" + statusText(s).split(" ")[0];
      return tr;
    });
    body.replaceChildren(...rows);
    $("no-streams").hidden = streams.length > 0;
    const live = streams.filter((s) => s.live).length;
    $("list-status").textContent = `${live} live stream${live === 1 ? "" : "s"}`;
    markSelected();
  }

  async function refreshList() {
    try {
      const r = await fetch("/streams.json", { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const j = await r.json();
      streams = (Array.isArray(j.streams) ? j.streams : []).filter((s) => s && KEY_RE.test(s.key));
      recordIngest(streams);
      renderList();
    } catch (e) {
      $("list-status").textContent = `stream list unavailable (${e.message || e})`;
    }
  }

  $("streams").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr || !tr.dataset.key) return;
    ev.preventDefault();
    select(tr.dataset.key, true);
  });

  window.addEventListener("popstate", () => {
    const key = new URLSearchParams(location.search).get("key");
    if (key && KEY_RE.test(key)) select(key, false);
    else {
      stop();
      resetStats(null);
      $("player").hidden = true;
      markSelected();
    }
  });

  // ---- past broadcasts (/recordings.json; the section stays hidden without it) ---------
  function fmtDuration(ms) {
    const s = Math.round((ms || 0) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(r).padStart(2, "0")}`;
  }

  async function refreshRecordings() {
    let list;
    try {
      const r = await fetch("/recordings.json?limit=50", { cache: "no-store" });
      if (!r.ok) return;
      const j = await r.json();
      list = (Array.isArray(j.recordings) ? j.recordings : []).filter((x) => x && KEY_RE.test(x.key) && typeof x.url === "string");
    } catch (e) {
      return;
    }
    const rows = list.map((x) => {
      const tr = document.createElement("tr");
      tr.dataset.key = x.key;
      const a = document.createElement("a");
      // A live recording plays as DVR (seekable back to its start, delta updates).
      const src = new URL(x.live ? `/dvr/${encodeURIComponent(x.key)}/index.m3u8` : x.url, location.href).href;
      a.href = `?src=${encodeURIComponent(src)}&key=${encodeURIComponent(x.key)}`;
      a.textContent = x.live ? "watch (DVR)" : "play";
      const cells = [
        x.key,
        x.started ? new Date(x.started).toLocaleString() : "–",
        fmtDuration(x.duration_ms),
        x.width && x.height ? `${x.width}x${x.height}` : "–",
        a,
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        if (typeof c === "string") td.textContent = c;
        else td.appendChild(c);
        tr.appendChild(td);
      }
      return tr;
    });
    $("recordings").replaceChildren(...rows);
    $("past").hidden = rows.length === 0;
  }

  // ---- start ---------------------------------------------------------------------------
  refreshList();
  refreshRecordings();
  setInterval(refreshRecordings, LIST_EVERY_MS * 5);
  setInterval(refreshList, LIST_EVERY_MS);
  setInterval(sample, SAMPLE_EVERY_MS);
  const query = new URLSearchParams(location.search);
  const first = query.get("key");
  if (query.has("src")) {
    // ?src=URL[&key=LABEL]: the label names the stream in the stats (default: the KEY
    // of a /live/KEY/ URL).
    const src = checkSrc(query.get("src"));
    if (src) play(first && KEY_RE.test(first) ? first : keyOfSrc(src) || "src", true, src);
    else {
      resetStats(null);
      $("player").hidden = false;
      recordError("src", "src= must be an http(s) URL of an .m3u8 playlist", true);
    }
  } else if (first && KEY_RE.test(first)) select(first, false);

  // ---- test hooks ----------------------------------------------------------------------
  // window.vidControl, for tests and the console: steer hls.js's ABR. Each call is logged
  // in vidStats.controls; the result says whether hls.js was there to take it.
  function control(action, value, apply) {
    pushBounded(stats.controls, { t: Date.now(), action, value }, MAX_EVENTS);
    if (!hls) return false;
    apply(hls);
    stats.autoLevelCapping = hls.autoLevelCapping;
    return true;
  }
  window.vidControl = {
    // The highest level ABR may choose (hls.levels index, lowest bit rate first); -1 lifts the cap.
    capLevel: (n) => control("capLevel", Number(n), (h) => {
      h.autoLevelCapping = Number.isInteger(Number(n)) && Number(n) >= -1 ? Number(n) : -1;
    }),
    uncap: () => control("uncap", -1, (h) => {
      h.autoLevelCapping = -1;
    }),
    levels: () => stats.levels.slice(),
  };
})();
