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

  const $ = (id) => document.getElementById(id);
  const video = $("video");

  // Everything a test (or a curious person in the console) wants to know. Times `t` are
  // wall-clock milliseconds (Date.now()); durations are seconds.
  const stats = {
    key: null,
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
    if (stats.playing && latency !== null) {
      pushBounded(stats.latency, { t: now, latency, wall, buffer: stats.buffer, currentTime: t }, MAX_SAMPLES);
    }
    render();
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
  }

  // ---- playback ----------------------------------------------------------------------
  function playlistUrl(key) {
    return `/live/${encodeURIComponent(key)}/index.m3u8`;
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
      key, engine: null, playing: false, started: null, currentTime: 0, latency: [], latencyNow: null,
      wallLatencyNow: null, buffer: 0, buffered: [], seekable: [], duration: null, playbackRate: 1, level: null, stalls: 0, stallEvents: [], stalledSeconds: 0,
      seeks: 0, errors: [], fatalErrors: 0, ended: false,
    });
    stalledSince = null;
    lastTime = -1;
    playOrigin = null;
    $("s-error").hidden = true;
  }

  function startHls(key) {
    // Low-latency mode: parts, preload hints and blocking reload; target latency is the
    // playlist's PART-HOLD-BACK. Up to 1.25x playback speed to win back latency after a
    // hiccup (hls.js only speeds up with more than a second buffered).
    const h = new Hls({ lowLatencyMode: true, enableWorker: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.25 });
    hls = h;
    stats.engine = `hls.js ${Hls.version}`;
    h.on(Hls.Events.MANIFEST_PARSED, tryPlay);
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
        retryTimer = setTimeout(() => play(key, false), RETRY_MS);
      }
    });
    h.loadSource(playlistUrl(key));
    h.attachMedia(video);
  }

  function startNative(key) {
    stats.engine = "native";
    video.src = playlistUrl(key);
    tryPlay();
  }

  function play(key, fresh = true) {
    stop();
    if (fresh) resetStats(key);
    $("player").hidden = false;
    video.muted = true;
    if (window.Hls && Hls.isSupported()) startHls(key);
    else if (video.canPlayType("application/vnd.apple.mpegurl")) startNative(key);
    else recordError("unsupported", "this browser plays neither hls.js (MSE) nor HLS natively", true);
    markSelected();
    render();
  }

  function select(key, push) {
    if (!KEY_RE.test(key) || key === stats.key) return;
    if (push) history.pushState({ key }, "", `?key=${encodeURIComponent(key)}`);
    play(key);
  }

  // ---- the stream list ----------------------------------------------------------------
  function markSelected() {
    for (const tr of $("streams").children) tr.classList.toggle("selected", tr.dataset.key === stats.key);
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
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        if (typeof c === "string") td.textContent = c;
        else td.appendChild(c);
        tr.appendChild(td);
      }
      if (s.bandwidth) tr.cells[3].title = `peak ${fmtRate(s.bandwidth)}`;
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

  // ---- start ---------------------------------------------------------------------------
  refreshList();
  setInterval(refreshList, LIST_EVERY_MS);
  setInterval(sample, SAMPLE_EVERY_MS);
  const first = new URLSearchParams(location.search).get("key");
  if (first && KEY_RE.test(first)) select(first, false);
})();
