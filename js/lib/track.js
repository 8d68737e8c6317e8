// Action-track model of the timeline widget: a plain ES module with no DOM dependency (Node's test
// runner imports it as is; the browser imports it from the widget and the live panel).
//
// The JSON it reads and writes is the engine's ActionTrack format (matrix_game_core/actions.py,
// version 1). canonicalJSON(track) reproduces ActionTrack.to_json() byte for byte; serializeTrack
// (the widget's value) writes the same text except that a mouse channel edited as keyframes keeps
// its keyframes ({"points": ..., "interp": "step" | "linear"}) so that curves stay editable after
// save/load. Both forms are valid input for ActionTrack.from_json, and serializeTrack(parseTrack(t))
// === t for every canonical text t.
//
// Track object (plain data; clone with cloneTrack):
//   { mode, numFrames, fps, meta,
//     keyboard: [Uint8Array(T) per key of the mode (0 up / 1 held)],
//     mouse: null (templerun) | { pitch: Channel, yaw: Channel } }
//   Channel = { values: Float32Array(T)  per-frame value, official units (0.1 = one camera step),
//               points: null (painted values) | [[frame, value], ...] keyframes (frames increasing),
//               interp: "step" | "linear" }          values are derived from points when points != null
//
// The model is split by responsibility under lib/track/ (constants, numbers, model, json, edit, bench,
// presets, history); this module re-exports all of it, so importers keep using "./lib/track.js".

export * from "./track/constants.js";
export * from "./track/numbers.js";
export * from "./track/model.js";
export * from "./track/json.js";
export * from "./track/edit.js";
export * from "./track/bench.js";
export * from "./track/presets.js";
export * from "./track/history.js";
