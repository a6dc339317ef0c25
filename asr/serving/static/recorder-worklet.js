// AudioWorklet processor: the microphone's 128-frame blocks -> Float32Array messages of `blockSeconds`
// of audio (mono: the first channel) posted to the page; "flush" posts what is left, then {flushed: true}.
class Recorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const seconds = (options.processorOptions && options.processorOptions.blockSeconds) || 0.05;
    this.size = Math.max(128, Math.round(sampleRate * seconds));
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        if (this.filled) this.post();
        this.port.postMessage({ flushed: true });
      }
    };
  }

  post() {
    const samples = this.buffer.slice(0, this.filled);
    this.port.postMessage({ samples }, [samples.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.size - this.filled);
        this.buffer.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.size) this.post();
      }
    }
    return true;
  }
}

registerProcessor("recorder", Recorder);
