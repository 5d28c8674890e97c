// @ts-check
// Ringing and ringback made with WebAudio: no sound files, nothing fetched.

/** @typedef {'ring' | 'ringback'} ToneKind */

/** @type {{ ctx: AudioContext | null, timer: number | undefined, kind: ToneKind | null }} */
const tone = { ctx: null, timer: undefined, kind: null };

/**
 * Plays a tone until `stopTone` (or another tone).
 * @param {ToneKind} kind `ring`: a call comes in; `ringback`: the called one's phone rings
 */
export function playTone(kind) {
  if (tone.kind === kind) return;
  stopTone();
  /** @type {AudioContext} */
  let ctx;
  try {
    ctx = tone.ctx = tone.ctx || new AudioContext();
  } catch { return; }
  tone.kind = kind;
  const burst = () => {
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    const now = ctx.currentTime;
    // Incoming: a two-note chime; ringback: the European 425 Hz, one second on.
    const notes = kind === 'ring' ? [[659, 0, 0.35], [880, 0.4, 0.5]] : [[425, 0, 1]];
    for (const [freq, start, length] of notes) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0, now + start);
      gain.gain.linearRampToValueAtTime(kind === 'ring' ? 0.12 : 0.06, now + start + 0.03);
      gain.gain.linearRampToValueAtTime(0, now + start + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + start);
      osc.stop(now + start + length + 0.05);
    }
  };
  burst();
  tone.timer = setInterval(burst, kind === 'ring' ? 2500 : 4000);
}

export function stopTone() {
  clearInterval(tone.timer);
  tone.timer = undefined;
  tone.kind = null;
}
