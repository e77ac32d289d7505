// a2k serve's browser page: the microphone capture processor (an AudioWorklet). It turns the first input channel
// into PCM16 (rounded and clipped as a2k_toolkit.serve.client.to_pcm16 does) and posts one chunk of
// `chunkSamples` samples at a time to the page, with the chunk's RMS level and the context time of its last sample.
"use strict";

class A2KCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.chunk = Math.max(128, opts.chunkSamples | 0 || 960);
    this.buf = new Int16Array(this.chunk);
    this.n = 0;
    this.sq = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = channel[i];
        this.sq += s * s;
        const v = Math.round(s * 32768);
        this.buf[this.n++] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
        if (this.n === this.chunk) {
          const pcm = this.buf.buffer;
          this.port.postMessage(
            { pcm, samples: this.n, rms: Math.sqrt(this.sq / this.n), time: currentTime + (i + 1) / sampleRate },
            [pcm],
          );
          this.buf = new Int16Array(this.chunk);
          this.n = 0;
          this.sq = 0;
        }
      }
    }
    return this.running;
  }
}

registerProcessor("a2k-capture", A2KCapture);
