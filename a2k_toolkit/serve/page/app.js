// a2k serve's browser page (docs/serve.md, "The browser page"): the microphone streamed to /stream as PCM16 at the
// audio context's sample rate, the keypoint frames drawn over the photo as they arrive. Everything it needs is
// served by `a2k serve` itself. window.a2kState holds what the page shows (the tests read it).
"use strict";

(() => {
  // iBUG 68-point parts: [first, end (exclusive), closed, colour], as a2k_toolkit.keypoints.PARTS / PART_COLORS
  const PARTS = [
    [0, 17, false, "rgb(255,255,255)"],
    [17, 22, false, "rgb(255,128,0)"],
    [22, 27, false, "rgb(255,128,0)"],
    [27, 31, false, "rgb(0,200,255)"],
    [31, 36, false, "rgb(0,200,255)"],
    [36, 42, true, "rgb(0,255,0)"],
    [42, 48, true, "rgb(0,255,0)"],
    [48, 60, true, "rgb(255,0,80)"],
    [60, 68, true, "rgb(255,80,200)"],
  ];
  const POINTS = 68;
  const FRAME_BYTES = 8 + POINTS * 2 * 4;
  const CHUNK_MS = 20; // audio per WebSocket message
  const MAX_VIEW = 640; // longest side of the canvas, CSS pixels
  const MAX_PHOTO = 1280; // photos larger than this are scaled down before they are sent
  const KEEP_FRAMES = 9000; // a2kState.frames keeps the newest 6 minutes
  const RATE_WINDOW_MS = 2000;
  const LATENCY_WINDOW = 250;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const canvas = $("view");
  const g = canvas.getContext("2d");

  const state = {
    status: "loading", // loading, idle, starting, streaming, stopping, done, error
    message: "",
    error: null,
    ready: null, // the server's ready message
    sampleRate: null, // the audio context's rate, sent as sample_rate
    capture: null, // "audioworklet" or "scriptprocessor"
    droppedSeconds: 0, // microphone audio captured before the server was ready (not sent)
    audioSentSeconds: 0,
    firstAudioAt: null, // performance.now() of the first audio message
    framesReceived: 0,
    frames: [], // {index, t, mouth, arrival (performance.now() ms), latency (ms or null)}
    fps: null,
    latency: { last: null, p50: null, p95: null, count: 0 },
    mouth: null,
    referenceIod: null,
    level: null,
    done: null,
  };
  window.a2kState = state;

  let photo = null; // {img, dataUrl, width, height}
  let ctx = null;
  let ws = null;
  let stream = null;
  let node = null;
  let sentLog = []; // [cumulative samples after a message, performance.now() it was sent]
  let sentSamples = 0;
  let capturedSamples = 0;
  let latencies = [];
  let arrivals = [];
  let lastPoints = null;
  let drawPending = false;

  // ---------------------------------------------------------------------------------------------- the display

  function setStatus(status, message, isError = false) {
    state.status = status;
    state.message = message;
    if (isError) state.error = message;
    const el = $("status");
    el.textContent = message;
    el.classList.toggle("error", isError);
    $("start").disabled = !photo || !["idle", "done", "error"].includes(status);
    $("stop").disabled = !["starting", "streaming"].includes(status);
    $("photo").disabled = ["starting", "streaming", "stopping"].includes(status);
  }

  function fitCanvas() {
    const s = Math.min(1, MAX_VIEW / Math.max(photo.width, photo.height));
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = `${Math.round(photo.width * s)}px`;
    canvas.style.height = `${Math.round(photo.height * s)}px`;
    canvas.width = Math.round(photo.width * s * dpr);
    canvas.height = Math.round(photo.height * s * dpr);
  }

  function draw() {
    drawPending = false;
    if (!photo) return;
    const s = canvas.width / photo.width;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.globalAlpha = 1;
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.globalAlpha = $("dim").checked ? 0.5 : 1;
    g.drawImage(photo.img, 0, 0, canvas.width, canvas.height);
    g.globalAlpha = 1;
    if (!lastPoints) return;
    g.lineWidth = Math.max(1.5, 2 * (window.devicePixelRatio || 1));
    g.lineJoin = "round";
    for (const [a, b, closed, colour] of PARTS) {
      g.beginPath();
      g.moveTo(lastPoints[2 * a] * s, lastPoints[2 * a + 1] * s);
      for (let i = a + 1; i < b; i++) g.lineTo(lastPoints[2 * i] * s, lastPoints[2 * i + 1] * s);
      if (closed) g.closePath();
      g.strokeStyle = colour;
      g.stroke();
    }
  }

  function requestDraw() {
    if (!drawPending) {
      drawPending = true;
      requestAnimationFrame(draw);
    }
  }

  function quantile(sorted, q) {
    if (!sorted.length) return null;
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  function showStats() {
    $("frames").textContent = String(state.framesReceived);
    $("fps").textContent = state.fps === null ? "–" : `${state.fps.toFixed(1)} fps`;
    const L = state.latency;
    $("latency").textContent =
      L.last === null ? "–" : `${Math.round(L.last)} ms (p50 ${Math.round(L.p50)}, p95 ${Math.round(L.p95)})`;
    const r = state.ready;
    $("lookahead-ms").textContent =
      r && r.latency_ms !== null ? `${Math.round(r.latency_ms)} ms (lookahead ${r.lookahead_ms} ms + window)` : "–";
    $("audio").textContent = state.sampleRate
      ? `${state.audioSentSeconds.toFixed(1)} s at ${state.sampleRate} Hz (${state.capture})`
      : "–";
    $("mouth").textContent = state.mouth === null ? "–" : state.mouth.toFixed(3);
    $("mouth-bar").style.width = state.mouth === null ? "0" : `${Math.min(10, state.mouth * 20).toFixed(2)}rem`;
    const db = state.level === null ? null : 20 * Math.log10(Math.max(state.level, 1e-6));
    $("level").textContent = db === null ? "–" : `${db.toFixed(0)} dBFS`;
    $("level-bar").style.width = db === null ? "0" : `${Math.max(0, (db + 60) / 6).toFixed(2)}rem`;
  }

  // -------------------------------------------------------------------------------------------------- the photo

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the file is not an image this browser can read (use a JPEG or PNG)"));
      img.src = url;
    });
  }

  function readAsDataUrl(blob) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(new Error("the file could not be read"));
      r.readAsDataURL(blob);
    });
  }

  async function usePhoto(blob, name) {
    let dataUrl = await readAsDataUrl(blob);
    let img = await loadImage(dataUrl);
    const big = Math.max(img.naturalWidth, img.naturalHeight);
    if (big > MAX_PHOTO) {
      // the server finds the face on what it is sent; the keypoints come back in that image's pixels
      const s = MAX_PHOTO / big;
      const c = document.createElement("canvas");
      c.width = Math.round(img.naturalWidth * s);
      c.height = Math.round(img.naturalHeight * s);
      c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
      dataUrl = c.toDataURL("image/jpeg", 0.92);
      img = await loadImage(dataUrl);
    }
    photo = { img, dataUrl, width: img.naturalWidth, height: img.naturalHeight, name };
    lastPoints = null;
    fitCanvas();
    draw();
  }

  // ------------------------------------------------------------------------------------------------ the session

  function wsUrl() {
    const u = new URL("stream", location.href);
    u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    u.search = "";
    const token = params.get("token");
    if (token) u.searchParams.set("token", token);
    return u.href;
  }

  function lookaheadMs() {
    const v = $("lookahead").value.trim() || params.get("lookahead") || "";
    if (v === "") return null;
    if (v === "full") return "full";
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`lookahead must be a number of ms >= 0, got ${v}`);
    return n;
  }

  function resetStats() {
    Object.assign(state, {
      error: null,
      ready: null,
      droppedSeconds: 0,
      audioSentSeconds: 0,
      firstAudioAt: null,
      framesReceived: 0,
      frames: [],
      fps: null,
      latency: { last: null, p50: null, p95: null, count: 0 },
      mouth: null,
      referenceIod: null,
      done: null,
    });
    sentLog = [];
    sentSamples = 0;
    capturedSamples = 0;
    latencies = [];
    arrivals = [];
    lastPoints = null;
  }

  async function openMicrophone() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error(
        "this browser gives the microphone only to secure pages: open the page as http://localhost:PORT/ " +
          "or over https (a TLS proxy in front of a2k serve)",
      );
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (e) {
      throw new Error(`no microphone: ${e.name === "NotAllowedError" ? "permission denied" : e.message || e.name}`);
    }
    const source = ctx.createMediaStreamSource(stream);
    const mute = ctx.createGain();
    mute.gain.value = 0; // the graph must reach the destination to run; nothing is played
    const chunk = Math.round((ctx.sampleRate * CHUNK_MS) / 1000);
    if (ctx.audioWorklet && window.AudioWorkletNode) {
      await ctx.audioWorklet.addModule("capture-worklet.js");
      node = new AudioWorkletNode(ctx, "a2k-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        channelCountMode: "explicit",
        processorOptions: { chunkSamples: chunk },
      });
      node.port.onmessage = (e) => onAudio(e.data.pcm, e.data.rms);
      state.capture = "audioworklet";
    } else {
      node = ctx.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = (e) => {
        const x = e.inputBuffer.getChannelData(0);
        const pcm = new Int16Array(x.length);
        let sq = 0;
        for (let i = 0; i < x.length; i++) {
          sq += x[i] * x[i];
          const v = Math.round(x[i] * 32768);
          pcm[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
        }
        onAudio(pcm.buffer, Math.sqrt(sq / x.length));
      };
      state.capture = "scriptprocessor";
    }
    source.connect(node);
    node.connect(mute);
    mute.connect(ctx.destination);
  }

  function onAudio(pcm, rms) {
    state.level = rms;
    const n = pcm.byteLength / 2;
    capturedSamples += n;
    if (state.status !== "streaming" || !ws || ws.readyState !== WebSocket.OPEN) {
      if (state.status === "starting") state.droppedSeconds = capturedSamples / state.sampleRate;
      return; // before the server is ready: live audio is not buffered
    }
    ws.send(pcm);
    const now = performance.now();
    if (state.firstAudioAt === null) state.firstAudioAt = now;
    sentSamples += n;
    sentLog.push([sentSamples, now]);
    state.audioSentSeconds = sentSamples / state.sampleRate;
  }

  function onFrame(buf) {
    const now = performance.now();
    if (buf.byteLength !== FRAME_BYTES) throw new Error(`a keypoint frame of ${buf.byteLength} bytes`);
    const view = new DataView(buf);
    const index = view.getUint32(0, true);
    const t = view.getFloat32(4, true);
    const pts = new Float32Array(POINTS * 2);
    for (let i = 0; i < POINTS * 2; i++) pts[i] = view.getFloat32(8 + 4 * i, true);
    const eye = (a) => {
      let x = 0;
      let y = 0;
      for (let i = a; i < a + 6; i++) {
        x += pts[2 * i];
        y += pts[2 * i + 1];
      }
      return [x / 6, y / 6];
    };
    if (index === 0 || state.referenceIod === null) {
      const [rx, ry] = eye(36);
      const [lx, ly] = eye(42);
      state.referenceIod = Math.hypot(lx - rx, ly - ry) || 1;
    }
    const mouth = Math.hypot(pts[2 * 66] - pts[2 * 62], pts[2 * 66 + 1] - pts[2 * 62 + 1]) / state.referenceIod;
    // latency: from sending the message that held the frame's last sample to the frame's arrival
    const fps = state.ready.fps;
    const need = Math.ceil(((index + 1) / fps) * state.sampleRate - 1e-6);
    while (sentLog.length > 1 && sentLog[0][0] < need) sentLog.shift();
    let latency = null;
    if (sentLog.length && sentLog[0][0] >= need) {
      latency = now - sentLog[0][1];
      latencies.push(latency);
      if (latencies.length > LATENCY_WINDOW) latencies.shift();
      const sorted = latencies.slice().sort((a, b) => a - b);
      state.latency = { last: latency, p50: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), count: latencies.length };
    }
    arrivals.push(now);
    while (arrivals.length && arrivals[0] < now - RATE_WINDOW_MS) arrivals.shift();
    const span = arrivals[arrivals.length - 1] - arrivals[0];
    state.fps = arrivals.length >= 2 && span > 0 ? ((arrivals.length - 1) * 1000) / span : null;
    state.framesReceived += 1;
    state.mouth = mouth;
    state.frames.push({ index, t, mouth, arrival: now, latency });
    if (state.frames.length > KEEP_FRAMES) state.frames.shift();
    lastPoints = pts;
    requestDraw();
  }

  function onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return fail(`the server sent something that is not JSON: ${text.slice(0, 80)}`);
    }
    if (msg.type === "ready") {
      state.ready = msg;
      setStatus("streaming", `Streaming: speak (session ${msg.session}, ${msg.fps} fps).`);
    } else if (msg.type === "done") {
      state.done = msg;
      setStatus("done", `Done: ${msg.frames} frames.`);
    } else if (msg.type === "error") {
      fail(`The server ended the session: ${msg.message}`);
    } else if (msg.type === "frame") {
      // JSON frames are not requested; accepted all the same
      const buf = new ArrayBuffer(FRAME_BYTES);
      const v = new DataView(buf);
      v.setUint32(0, msg.index, true);
      v.setFloat32(4, msg.t, true);
      msg.points.forEach(([x, y], i) => {
        v.setFloat32(8 + 8 * i, x, true);
        v.setFloat32(12 + 8 * i, y, true);
      });
      onFrame(buf);
    }
  }

  function connect(look) {
    return new Promise((resolve, reject) => {
      ws = new WebSocket(wsUrl());
      ws.binaryType = "arraybuffer";
      let opened = false;
      ws.onopen = () => {
        opened = true;
        const start = { type: "start", image: photo.dataUrl, sample_rate: ctx.sampleRate, format: "binary" };
        if (look !== null) start.lookahead_ms = look;
        ws.send(JSON.stringify(start));
        resolve();
      };
      ws.onmessage = (e) => {
        try {
          if (typeof e.data === "string") onText(e.data);
          else onFrame(e.data);
          showStats();
        } catch (err) {
          fail(`a message from the server could not be read: ${err.message}`);
        }
      };
      ws.onerror = () => {
        if (!opened) reject(new Error(`cannot connect to ${wsUrl().split("?")[0]}`));
      };
      ws.onclose = (e) => {
        if (["starting", "streaming", "stopping"].includes(state.status)) {
          fail(`The connection closed (code ${e.code}${e.reason ? `: ${e.reason}` : ""}).`);
        }
        stopAudio();
      };
    });
  }

  function stopAudio() {
    if (node) {
      if (node.port) node.port.postMessage("stop");
      node.disconnect();
      node = null;
    }
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
    }
    if (ctx) {
      ctx.close();
      ctx = null;
    }
  }

  function fail(message) {
    const wasActive = ["starting", "streaming", "stopping"].includes(state.status);
    setStatus("error", message, true);
    if (wasActive && ws && ws.readyState === WebSocket.OPEN) ws.close();
    stopAudio();
    showStats();
  }

  async function start() {
    resetStats();
    showStats();
    let look;
    try {
      look = lookaheadMs();
    } catch (e) {
      return fail(e.message);
    }
    // created within the click, so that the browser lets it run
    ctx = new (window.AudioContext || window.webkitAudioContext)();
    state.sampleRate = ctx.sampleRate;
    setStatus("starting", "Asking for the microphone…");
    try {
      await openMicrophone(); // first: the permission prompt may take a while, the server would time out
      if (state.status !== "starting") return stopAudio(); // stopped meanwhile
      await ctx.resume();
      setStatus("starting", "Connecting; the server finds the face in the photo…");
      await connect(look);
    } catch (e) {
      if (state.status !== "starting") return stopAudio();
      fail(e.message || String(e));
    }
  }

  function stop() {
    if (ws && ws.readyState === WebSocket.OPEN && state.status === "streaming") {
      setStatus("stopping", "Stopping: the last frames…");
      ws.send(JSON.stringify({ type: "end" }));
    } else if (state.status === "starting") {
      setStatus("idle", "Stopped before the stream began.");
      if (ws) ws.close();
    }
    stopAudio();
  }

  setInterval(() => {
    if (state.status === "streaming") showStats();
  }, 250);

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("dim").addEventListener("change", draw);
  $("photo").addEventListener("change", async (e) => {
    const file = e.target.files && e.target.files[0];
    if (!file) return;
    try {
      await usePhoto(file, file.name);
      setStatus("idle", `Photo: ${file.name}. Press “Start microphone”.`);
    } catch (err) {
      photo = null;
      setStatus("error", `${file.name}: ${err.message}`, true);
    }
  });

  (async () => {
    try {
      const r = await fetch("sample.jpg");
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      await usePhoto(await r.blob(), "sample.jpg");
      setStatus("idle", "Photo: the sample. Choose another, or press “Start microphone”.");
    } catch (e) {
      setStatus("idle", `The sample photo did not load (${e.message}); choose a photo.`);
    }
    const look = params.get("lookahead");
    if (look) $("lookahead").value = look;
  })();
})();
