// "Go live from this browser": publishes the camera and microphone to vid over WHIP
// (RFC 9725): an SDP offer POSTed to /whip/KEY, the answer applied, DELETE on the session
// URL to stop. The stream then plays at /live/KEY/ like any other. Tests read
// `window.vidPublish`.
(function () {
  "use strict";

  const KEY_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const $ = (id) => document.getElementById(id);
  const state = { state: "idle", key: null, session: null, error: null, codecs: null };
  window.vidPublish = state;

  let pc = null;
  let media = null;

  function show(text, isError) {
    state.state = text;
    const el = $("golive-status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // H.264 first: vid segments H.264 (and Opus) only.
  function preferH264(transceiver) {
    if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
    const caps = RTCRtpSender.getCapabilities("video");
    if (!caps) return;
    const h264 = caps.codecs.filter((c) => /h264/i.test(c.mimeType));
    const rest = caps.codecs.filter((c) => /rtx|red|ulpfec/i.test(c.mimeType));
    if (h264.length) transceiver.setCodecPreferences(h264.concat(rest));
  }

  async function start() {
    const key = $("golive-key").value.trim();
    if (!KEY_RE.test(key)) {
      show("the stream key must be 1-64 of A-Z a-z 0-9 _ -", true);
      return;
    }
    state.key = key;
    state.error = null;
    $("golive-start").disabled = true;
    try {
      show("asking for the camera…");
      media = await navigator.mediaDevices.getUserMedia({
        video: { width: 1280, height: 720, frameRate: 30 },
        audio: true,
      });
      $("golive-preview").srcObject = media;
      pc = new RTCPeerConnection();
      for (const track of media.getTracks()) {
        const t = pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
        if (track.kind === "video") {
          preferH264(t);
          // A live stream keeps its picture size (each change is a new HLS init section);
          // the encoder lowers the frame rate instead when it must.
          const p = t.sender.getParameters();
          p.degradationPreference = "maintain-resolution";
          await t.sender.setParameters(p).catch(() => {});
        }
      }
      pc.onconnectionstatechange = () => {
        if (pc) show(pc.connectionState === "connected" ? "live" : pc.connectionState);
      };
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      show("connecting…");
      const headers = { "Content-Type": "application/sdp" };
      const token = $("golive-token").value.trim();
      if (token) headers.Authorization = "Bearer " + token;
      const r = await fetch("whip/" + encodeURIComponent(key), {
        method: "POST",
        headers,
        body: pc.localDescription.sdp,
      });
      const body = await r.text();
      if (r.status !== 201) throw new Error("the server said " + r.status + ": " + body.trim());
      state.session = r.headers.get("Location");
      state.codecs = (body.match(/a=rtpmap:\d+ (H264|opus)\/\d+/gi) || []).join(" ");
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      $("golive-stop").disabled = false;
      $("golive-watch").href = "?key=" + encodeURIComponent(key);
      $("golive-watch").hidden = false;
    } catch (e) {
      state.error = String(e && e.message ? e.message : e);
      show(state.error, true);
      await stop(true);
    }
  }

  async function stop(keepStatus) {
    const session = state.session;
    state.session = null;
    $("golive-stop").disabled = true;
    // DELETE first: the stream ends at once; closing the connection alone ends it too.
    if (session) {
      try {
        await fetch(session, { method: "DELETE", keepalive: true });
      } catch (e) {
        /* the server ends the stream when the connection closes anyway */
      }
    }
    if (pc) pc.close();
    pc = null;
    if (media) media.getTracks().forEach((t) => t.stop());
    media = null;
    $("golive-preview").srcObject = null;
    $("golive-start").disabled = false;
    if (keepStatus !== true) show("stopped");
  }

  window.addEventListener("DOMContentLoaded", () => {
    if (!window.RTCPeerConnection || !navigator.mediaDevices) {
      $("golive").hidden = true;
      return;
    }
    $("golive-start").addEventListener("click", start);
    $("golive-stop").addEventListener("click", () => stop());
    window.addEventListener("pagehide", () => stop(true));
  });
})();
