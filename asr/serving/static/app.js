// The page's client of the server's streaming protocol (README.md, "Server protocol"): microphone ->
// AudioWorklet (recorder-worklet.js) -> 50 ms float32 frames at the device's rate -> ws /stream;
// words, partial text, lines and the final transcript shown as they arrive.
"use strict";

const BLOCK_SECONDS = 0.05;  // audio per WebSocket message
const LOW_CONFIDENCE = 0.5;  // words below it are marked
const $ = (id) => document.getElementById(id);

let socket = null, context = null, media = null, recorder = null;

function setStatus(text) { $("status").textContent = text; }

function wordSpan(w) {
  const span = document.createElement("span");
  span.className = "word" + (w.confidence < LOW_CONFIDENCE ? " low" : "");
  span.textContent = w.word;
  span.title = `${w.start.toFixed(2)}–${w.end.toFixed(2)} s, confidence ${w.confidence.toFixed(2)}`;
  span.dataset.start = w.start;
  span.dataset.end = w.end;
  span.dataset.confidence = w.confidence;
  return span;
}

function addWords(words) {
  const current = $("current");
  for (const w of words) {
    if (current.childNodes.length) current.append(" ");
    current.append(wordSpan(w));
  }
}

function endLine() {  // the words of the current line move to a line of their own
  const line = document.createElement("p");
  line.className = "line";
  line.append(...$("current").childNodes);
  $("lines").append(line);
}

function onMessage(event) {
  const m = JSON.parse(event.data);
  if (m.error) { setStatus(`error: ${m.error}`); return; }
  if (m.words) addWords(m.words);
  if ("partial" in m) $("partial").textContent = m.partial;
  if (m.endpoint) endLine();
  if (m.final) {
    if ($("current").childNodes.length) endLine();
    $("partial").textContent = "";
    $("final").textContent = m.text;
    setStatus(`done: ${m.seconds.toFixed(2)} s of audio`);
  } else if ("seconds" in m) {
    setStatus(`listening: ${m.seconds.toFixed(1)} s`);
  }
}

async function start() {
  $("start").disabled = true;
  for (const id of ["lines", "current", "partial", "final"]) $(id).textContent = "";
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    context = new AudioContext();
    await context.audioWorklet.addModule("static/recorder-worklet.js");
    const source = context.createMediaStreamSource(media);
    recorder = new AudioWorkletNode(context, "recorder", { processorOptions: { blockSeconds: BLOCK_SECONDS } });
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/stream`;
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    socket.onmessage = onMessage;
    socket.onclose = (e) => {
      if (e.code !== 1000) setStatus(`closed: ${e.code} ${e.reason}`);
      cleanUp();
    };
    await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
    socket.send(JSON.stringify({ sample_rate: context.sampleRate, format: "f32" }));
    recorder.port.onmessage = (e) => {
      if (e.data.samples && socket.readyState === WebSocket.OPEN) socket.send(e.data.samples.buffer);
      if (e.data.flushed && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ eof: true }));
    };
    source.connect(recorder);
    recorder.connect(context.destination);  // silent (the processor writes nothing): keeps it running
    if (context.state !== "running") await context.resume();
    setStatus(`listening (${context.sampleRate} Hz)`);
    $("stop").disabled = false;
  } catch (err) {
    setStatus(`cannot start: ${err.message || err}`);
    cleanUp();
  }
}

function stop() {  // the worklet posts its last samples, then {flushed}: eof follows them
  $("stop").disabled = true;
  setStatus("finishing...");
  if (media) media.getTracks().forEach((t) => t.stop());
  if (recorder) recorder.port.postMessage("flush");
}

function cleanUp() {
  if (media) media.getTracks().forEach((t) => t.stop());
  if (context) context.close();
  media = context = recorder = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").onclick = start;
$("stop").onclick = stop;
