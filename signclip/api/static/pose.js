// Reading a .pose file (pose-format's binary layout, versions 0.1 and 0.2) and drawing it as a skeleton.
//
// Header: float32 version; uint16 width, height, depth; uint16 components; per component: name and point
// format (uint16 length + UTF-8), uint16 points, limbs, colors; the point names; limbs as uint16 pairs;
// colors as uint16 triples. Body (0.2): float32 fps, uint32 frames, uint16 people, then float32 data
// [frames][people][points][dims] and float32 confidence [frames][people][points]. Body (0.1): uint16 fps,
// uint16 frames (the count is taken from the bytes left), uint16 people, then the same arrays.
"use strict";

export class PoseFormatError extends Error {}

export function parsePose(buffer) {
  const view = new DataView(buffer);
  let offset = 0;
  const need = (n) => {
    if (offset + n > view.byteLength) throw new PoseFormatError(`truncated .pose: needs ${offset + n} bytes, has ${view.byteLength}`);
  };
  const u16 = () => { need(2); const v = view.getUint16(offset, true); offset += 2; return v; };
  const u32 = () => { need(4); const v = view.getUint32(offset, true); offset += 4; return v; };
  const f32 = () => { need(4); const v = view.getFloat32(offset, true); offset += 4; return v; };
  const decoder = new TextDecoder("utf-8");
  const str = () => { const n = u16(); need(n); const s = decoder.decode(new Uint8Array(buffer, offset, n)); offset += n; return s; };

  const version = Math.round(f32() * 10) / 10;
  if (version !== 0.1 && version !== 0.2) throw new PoseFormatError(`unsupported .pose version ${version}`);
  const width = u16(), height = u16(), depth = u16();
  const components = [];
  for (let c = u16(); c > 0; c--) {
    const name = str(), format = str();
    const nPoints = u16(), nLimbs = u16(), nColors = u16();
    const points = [];
    for (let i = 0; i < nPoints; i++) points.push(str());
    const limbs = [];
    for (let i = 0; i < nLimbs; i++) limbs.push([u16(), u16()]);
    const colors = [];
    for (let i = 0; i < nColors; i++) colors.push([u16(), u16(), u16()]);
    components.push({ name, format, points, limbs, colors });
  }
  const dims = Math.max(...components.map((c) => c.format.length)) - 1;
  const totalPoints = components.reduce((n, c) => n + c.points.length, 0);
  let fps, frames, people;
  if (version === 0.2) {
    fps = f32(); frames = u32(); people = u16();
  } else {
    fps = u16(); u16(); people = u16();
    frames = Math.floor((view.byteLength - offset) / (people * totalPoints * (dims + 1) * 4));
  }
  const dataCount = frames * people * totalPoints * dims;
  const confCount = frames * people * totalPoints;
  need((dataCount + confCount) * 4);
  // copy: Float32Array views must be 4-byte aligned, the header's length is not
  const floats = new Float32Array(buffer.slice(offset, offset + (dataCount + confCount) * 4));
  return {
    version, width, height, depth, components, fps: fps || 25, frames, people, dims, totalPoints,
    data: floats.subarray(0, dataCount), confidence: floats.subarray(dataCount),
  };
}

// Where each component's points start in the flat point axis.
function componentOffsets(pose) {
  const offsets = {};
  let start = 0;
  for (const c of pose.components) { offsets[c.name] = start; start += c.points.length; }
  return offsets;
}

const SKIPPED = new Set(["POSE_WORLD_LANDMARKS"]);  // metres around the hips, not image coordinates

export class PosePlayer {
  // skeleton: {component name: [[a, b], ...]} limbs that replace the header's (the face contours)
  constructor(canvas, pose, skeleton = {}) {
    this.canvas = canvas;
    this.pose = pose;
    this.ctx = canvas.getContext("2d");
    this.offsets = componentOffsets(pose);
    this.parts = pose.components.filter((c) => !SKIPPED.has(c.name)).map((c) => ({
      component: c,
      limbs: skeleton[c.name] || c.limbs,
      color: (i) => {
        const rgb = c.colors.length ? c.colors[i % c.colors.length] : [80, 80, 80];
        return `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
      },
    }));
    this.bounds = this.measure();
  }

  point(frame, index) {
    const p = this.pose;
    const base = ((frame * p.people) * p.totalPoints + index);
    if (p.confidence[base] <= 0) return null;
    return [p.data[base * p.dims], p.data[base * p.dims + 1]];
  }

  // the box every drawn, detected point of the clip fits in (falls back to the header's frame)
  measure() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const part of this.parts) {
      const start = this.offsets[part.component.name];
      for (let f = 0; f < this.pose.frames; f++) {
        for (let i = 0; i < part.component.points.length; i++) {
          const q = this.point(f, start + i);
          if (!q || !Number.isFinite(q[0]) || !Number.isFinite(q[1])) continue;
          x0 = Math.min(x0, q[0]); y0 = Math.min(y0, q[1]); x1 = Math.max(x1, q[0]); y1 = Math.max(y1, q[1]);
        }
      }
    }
    if (!(x1 > x0 && y1 > y0)) return [0, 0, this.pose.width || 1, this.pose.height || 1];
    const pad = 0.05 * Math.max(x1 - x0, y1 - y0);
    return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
  }

  draw(frame) {
    const { ctx, canvas } = this;
    const [x0, y0, x1, y1] = this.bounds;
    const scale = Math.min(canvas.width / (x1 - x0), canvas.height / (y1 - y0));
    const dx = (canvas.width - scale * (x1 - x0)) / 2, dy = (canvas.height - scale * (y1 - y0)) / 2;
    const at = (q) => [dx + (q[0] - x0) * scale, dy + (q[1] - y0) * scale];
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 1.5;
    ctx.lineCap = "round";
    for (const part of this.parts) {
      const start = this.offsets[part.component.name];
      part.limbs.forEach(([a, b], i) => {
        const p = this.point(frame, start + a), q = this.point(frame, start + b);
        if (!p || !q) return;
        const [ax, ay] = at(p), [bx, by] = at(q);
        ctx.strokeStyle = part.color(i);
        ctx.beginPath();
        ctx.moveTo(ax, ay);
        ctx.lineTo(bx, by);
        ctx.stroke();
      });
    }
  }
}

// One animation loop for every player on the page.
const players = new Set();
let running = false;

function tick(now) {
  for (const player of players) {
    if (!player.canvas.isConnected) { players.delete(player); continue; }
    const frames = Math.max(1, player.pose.frames);
    player.draw(Math.floor((now / 1000) * player.pose.fps) % frames);
  }
  if (players.size) requestAnimationFrame(tick); else running = false;
}

export function play(player) {
  players.add(player);
  player.draw(0);
  if (!running) { running = true; requestAnimationFrame(tick); }
}
