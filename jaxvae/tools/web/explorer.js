"use strict";
// The jaxvae explorer: the model of the embedded data, evaluated in the page (see jaxvae/tools/explorer.py).
// Maths as in jaxvae: q_phi(z|x) = N(mu, diag sigma^2) from the encoder's last layer [mu, log sigma];
// p(z) = N(0, I); p_theta(x|z) Bernoulli(sigmoid(l)) or N(mu, sigma^2) (minus D log 256 for 8-bit data).

const DATA = JSON.parse(document.getElementById("data").textContent);
const D_PIXELS = 784;
const LOG_2PI = Math.log(2 * Math.PI);

function floats(b64) {
  const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return new Float32Array(u.buffer);
}
function bytes(b64) {
  const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return u;
}

const ACT = {
  relu: (v) => (v > 0 ? v : 0),
  tanh: Math.tanh,
  elu: (v) => (v > 0 ? v : Math.expm1(v)),
  softplus: (v) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v))),
};
const act = ACT[DATA.activation];
const layers = (list) => list.map((l) => ({ n: l.in, m: l.out, w: floats(l.w), b: floats(l.b) }));
const ENC = layers(DATA.encoder), DEC = layers(DATA.decoder);
const d = DATA.latent_dim;
const LIK = DATA.likelihood;
const LIK_LOG_SCALE = LIK.name === "gaussian" ? floats(LIK.log_scale) : null;
const POINTS = floats(DATA.points), LABELS = bytes(DATA.labels), IMAGES = floats(DATA.images);

// Y = X W^T + b for one layer and a batch of B inputs (X [B, in], W stored [out, in], rows contiguous),
// then the activation unless last. Each weight row is used for the whole batch while it is in cache.
function dense(layer, X, B, last) {
  const n = layer.n, m = layer.m, w = layer.w, bias = layer.b, Y = new Float64Array(B * m);
  for (let o = 0; o < m; o++) {
    const row = o * n;
    let b = 0;
    for (; b + 3 < B; b += 4) {  // four inputs per pass over the weight row: each weight loaded once for all four
      const x0 = b * n, x1 = x0 + n, x2 = x1 + n, x3 = x2 + n;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < n; i++) {
        const wi = w[row + i];
        s0 += wi * X[x0 + i]; s1 += wi * X[x1 + i]; s2 += wi * X[x2 + i]; s3 += wi * X[x3 + i];
      }
      const c = bias[o];
      Y[b * m + o] = last ? c + s0 : act(c + s0);
      Y[(b + 1) * m + o] = last ? c + s1 : act(c + s1);
      Y[(b + 2) * m + o] = last ? c + s2 : act(c + s2);
      Y[(b + 3) * m + o] = last ? c + s3 : act(c + s3);
    }
    for (; b < B; b++) {
      const x = b * n;
      let s = 0;
      for (let i = 0; i < n; i++) s += w[row + i] * X[x + i];
      Y[b * m + o] = last ? bias[o] + s : act(bias[o] + s);
    }
  }
  return Y;
}
function mlp(list, X, B = 1) {
  let h = X;
  list.forEach((layer, k) => { h = dense(layer, h, B, k === list.length - 1); });
  return h;
}

// q_phi(z|x): {mean [d], logScale [d]}.
function encode(x) {
  const out = mlp(ENC, Float64Array.from(x));
  return { mean: Array.from(out.slice(0, d)), logScale: Array.from(out.slice(d, 2 * d)) };
}
// The decoder's raw output at z: logits (Bernoulli) or means (Gaussian), [784].
function decode(z) { return mlp(DEC, Float64Array.from(z)); }
// log p_theta(x, z) at many codes zs (each [d]), decoded in batches.
function logJoints(x, zs, batch = 125) {
  const out = new Float64Array(zs.length);
  for (let start = 0; start < zs.length; start += batch) {
    const B = Math.min(batch, zs.length - start), Z = new Float64Array(B * d);
    for (let b = 0; b < B; b++) Z.set(zs[start + b], b * d);
    const raw = mlp(DEC, Z, B);
    for (let b = 0; b < B; b++) {
      const z = zs[start + b];
      out[start + b] = logLikelihood(x, raw.subarray(b * D_PIXELS, (b + 1) * D_PIXELS)) + logPrior(z);
    }
  }
  return out;
}
function meanX(raw) {
  const m = new Float64Array(D_PIXELS);
  for (let i = 0; i < D_PIXELS; i++) {
    m[i] = LIK.name === "bernoulli" ? 1 / (1 + Math.exp(-raw[i])) : (LIK.bins ? Math.min(Math.max(raw[i], 0), 1) : raw[i]);
  }
  return m;
}
// log p_theta(x|z) from the decoder's raw output.
function logLikelihood(x, raw) {
  let s = 0;
  if (LIK.name === "bernoulli") {
    for (let i = 0; i < D_PIXELS; i++) {
      const l = raw[i];
      s += x[i] * l - (Math.max(l, 0) + Math.log1p(Math.exp(-Math.abs(l))));
    }
    return s;
  }
  for (let i = 0; i < D_PIXELS; i++) {
    const u = (x[i] - raw[i]) * Math.exp(-LIK_LOG_SCALE[i]);
    s += -0.5 * (u * u + LOG_2PI) - LIK_LOG_SCALE[i];
  }
  return LIK.bins ? s - D_PIXELS * Math.log(LIK.bins) : s;
}
function logPrior(z) { let s = 0; for (const v of z) s += -0.5 * (v * v + LOG_2PI); return s; }
function logQ(q, z) {
  let s = 0;
  for (let i = 0; i < z.length; i++) {
    const u = (z[i] - q.mean[i]) * Math.exp(-q.logScale[i]);
    s += -0.5 * (u * u + 2 * q.logScale[i] + LOG_2PI);
  }
  return s;
}
function linspace(a, b, n) {
  const step = (b - a) / (n - 1), out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = a + i * step;
  out[n - 1] = b;
  return out;
}
function logSumExp(values) {
  let m = -Infinity;
  for (const v of values) if (v > m) m = v;
  let s = 0;
  for (const v of values) s += Math.exp(v - m);
  return m + Math.log(s);
}

// The plane of the explained image: z = origin + a u1 + b u2 (d = 2: the z plane itself).
function planeOf(origin, u1, u2) {
  return { at: (a, b) => origin.map((o, i) => o + a * u1[i] + b * u2[i]), origin, u1, u2 };
}
// q in plane coordinates (a, b): its mean and 2x2 covariance (the marginal of q on the plane).
function qOnPlane(q, plane) {
  const dm = q.mean.map((m, i) => m - plane.origin[i]);
  const dot = (u, v) => u.reduce((s, ui, i) => s + ui * v[i], 0);
  const v = q.logScale.map((l) => Math.exp(2 * l));
  const cov = (u, w) => u.reduce((s, ui, i) => s + ui * w[i] * v[i], 0);
  return { mean: [dot(plane.u1, dm), dot(plane.u2, dm)],
           cov: [[cov(plane.u1, plane.u1), cov(plane.u1, plane.u2)], [cov(plane.u1, plane.u2), cov(plane.u2, plane.u2)]] };
}

// The grid of jaxvae.tools.teaching.posterior_grid: a coarse pass over [-4, 4]^2 finds where the posterior
// is above 1e-4 of its maximum; the fine grid spans it +- one coarse step and q's mean +- 4 sigma.
function posteriorGrid(x, gridQ, plane) {
  const G = DATA.grid, c = linspace(-G.extent, G.extent, G.coarse), h = c[1] - c[0];
  const codes = (z1, z2) => { const zs = []; for (const b of z2) for (const a of z1) zs.push(plane.at(a, b)); return zs; };
  const coarse = logJoints(x, codes(c, c));  // rows follow z2
  let top = -Infinity;
  for (const v of coarse) if (v > top) top = v;
  const threshold = top + Math.log(G.threshold);
  let r0 = Infinity, r1 = -Infinity, k0 = Infinity, k1 = -Infinity;
  for (let r = 0; r < G.coarse; r++) for (let k = 0; k < G.coarse; k++) {
    if (coarse[r * G.coarse + k] > threshold) { r0 = Math.min(r0, r); r1 = Math.max(r1, r); k0 = Math.min(k0, k); k1 = Math.max(k1, k); }
  }
  const qp = qOnPlane(gridQ, plane), s1 = Math.sqrt(qp.cov[0][0]), s2 = Math.sqrt(qp.cov[1][1]);
  const z1 = linspace(Math.min(c[k0] - h, qp.mean[0] - 4 * s1), Math.max(c[k1] + h, qp.mean[0] + 4 * s1), G.size);
  const z2 = linspace(Math.min(c[r0] - h, qp.mean[1] - 4 * s2), Math.max(c[r1] + h, qp.mean[1] + 4 * s2), G.size);
  return { z1, z2, lj: logJoints(x, codes(z1, z2)), size: G.size };
}

// d = 2: log p(x), ELBO(q), KL(q || p(z|x)) by quadrature on the grid (jaxvae.tools.teaching.bounds_on_grid).
function boundsOnGrid(grid, q) {
  const n = grid.size, cell = (grid.z1[1] - grid.z1[0]) * (grid.z2[1] - grid.z2[0]);
  const logPx = logSumExp(grid.lj) + Math.log(cell);
  const lq = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) lq[r * n + k] = logQ(q, [grid.z1[k], grid.z2[r]]);
  const norm = logSumExp(lq);
  let elbo = 0, mass = 0;
  for (let g = 0; g < n * n; g++) { const w = Math.exp(lq[g] - norm); elbo += w * (grid.lj[g] - lq[g]); }
  for (let g = 0; g < n * n; g++) mass += Math.exp(lq[g]) * cell;
  return { log_px: logPx, elbo, kl: logPx - elbo, q_mass_on_grid: mass, method: "grid" };
}

// d > 2: the ELBO by Monte Carlo from q and log p(x) by importance sampling (IWAE_k), k draws of a fixed seed.
function mulberry32(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function boundsBySampling(x, q, k = 500) {
  const rand = mulberry32(12345), logW = new Float64Array(k);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const zs = [];
  for (let s = 0; s < k; s++) zs.push(q.mean.map((m, i) => m + Math.exp(q.logScale[i]) * normal()));
  const lj = logJoints(x, zs);
  let elbo = 0;
  for (let s = 0; s < k; s++) { logW[s] = lj[s] - logQ(q, zs[s]); elbo += logW[s] / k; }
  const logPx = logSumExp(logW) - Math.log(k);
  return { log_px: logPx, elbo, kl: logPx - elbo, method: "sampling", k };
}

// ---------------------------------------------------------------------------------------------
// The page.
// ---------------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const state = { pointer: null, path: [], explained: null, plane: null, view: null };

function drawImage(canvas, values) {
  const small = document.createElement("canvas");
  small.width = 28; small.height = 28;
  const ctx = small.getContext("2d"), img = ctx.createImageData(28, 28);
  for (let i = 0; i < D_PIXELS; i++) {
    const v = Math.round(255 * Math.min(Math.max(values[i], 0), 1));
    img.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const big = canvas.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// The latent plane: directions u1, u2 and the anchor code.
function unit(i) { const u = new Array(d).fill(0); u[i] = 1; return u; }
function latentPlane() {
  if (d === 2) return planeOf([0, 0], [1, 0], [0, 1]);
  const mode = $("plane-mode").value;
  let u1, u2;
  if (mode === "pca") { [u1, u2] = DATA.directions; } else {
    const i = Math.min(Math.max(parseInt($("coord-i").value, 10) || 1, 1), d) - 1;
    let j = Math.min(Math.max(parseInt($("coord-j").value, 10) || 2, 1), d) - 1;
    if (j === i) j = (i + 1) % d;
    u1 = unit(i); u2 = unit(j);
  }
  const anchorMode = $("anchor").value;
  let anchor = DATA.centre;
  if (anchorMode === "zero") anchor = new Array(d).fill(0);
  if (anchorMode === "explained" && state.explained) anchor = state.explained.qPhi.mean;
  // The anchor's own coordinates along u1, u2 are replaced by the plane's (a, b).
  const along = (u) => u.reduce((s, ui, i) => s + ui * anchor[i], 0);
  const origin = anchor.map((v, i) => v - along(u1) * u1[i] - along(u2) * u2[i]);
  return planeOf(origin, u1, u2);
}
function project(plane, z) {
  const dz = z.map((v, i) => v - plane.origin[i]);
  return [plane.u1.reduce((s, u, i) => s + u * dz[i], 0), plane.u2.reduce((s, u, i) => s + u * dz[i], 0)];
}

// The plane's view: every code's projection and the prior's 2 sigma ring (the square [-2, 2]^2), with equal scale on
// both axes and a margin of 5% of the canvas on each side, so that no code is cut off.
const VIEW_MARGIN = 0.05;
function planeView(canvas, projected) {
  let a0 = -2, a1 = 2, b0 = -2, b1 = 2;
  for (const [a, b] of projected) {
    if (a < a0) a0 = a; if (a > a1) a1 = a; if (b < b0) b0 = b; if (b > b1) b1 = b;
  }
  const inner = 1 - 2 * VIEW_MARGIN, scale = Math.max((a1 - a0) / (inner * canvas.width), (b1 - b0) / (inner * canvas.height));
  const ca = (a0 + a1) / 2, cb = (b0 + b1) / 2, ha = (scale * canvas.width) / 2, hb = (scale * canvas.height) / 2;
  // scale: plane units per canvas pixel, the same on both axes; a0..a1 and b0..b1: the plane's edges.
  return { scale, a0: ca - ha, a1: ca + ha, b0: cb - hb, b1: cb + hb };
}
const toPixel = (canvas, a, b) => [(a - state.view.a0) / state.view.scale, (state.view.b1 - b) / state.view.scale];
// From a pointer's offset (CSS pixels: the canvas may be drawn scaled, e.g. in a narrow frame) to the plane.
const toPlane = (canvas, px, py) => {
  const sx = canvas.width / (canvas.clientWidth || canvas.width), sy = canvas.height / (canvas.clientHeight || canvas.height);
  return [state.view.a0 + px * sx * state.view.scale, state.view.b1 - py * sy * state.view.scale];
};

function drawPlane() {
  const canvas = $("plane"), ctx = canvas.getContext("2d");
  state.plane = latentPlane();
  const projected = [];
  for (let p = 0; p < DATA.n_points; p++) projected.push(project(state.plane, Array.from(POINTS.subarray(p * d, (p + 1) * d))));
  state.view = planeView(canvas, projected);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#bbb";
  const [cx, cy] = toPixel(canvas, ...project(state.plane, new Array(d).fill(0))), unitPx = 1 / state.view.scale;
  for (const r of [1, 2]) { ctx.beginPath(); ctx.arc(cx, cy, r * unitPx, 0, 2 * Math.PI); ctx.stroke(); }
  for (let p = 0; p < DATA.n_points; p++) {
    const [a, b] = projected[p];
    const [x, y] = toPixel(canvas, a, b);
    ctx.fillStyle = COLOURS[LABELS[p] % 10];
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  }
  if (state.path.length) {
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath();
    state.path.forEach(([a, b], k) => { const [x, y] = toPixel(canvas, a, b); k ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke(); ctx.lineWidth = 1;
    for (const [a, b] of state.path) { const [x, y] = toPixel(canvas, a, b); ctx.fillStyle = "#000"; ctx.fillRect(x - 4, y - 4, 8, 8); }
  }
}

function pointAt(a, b) {
  const z = state.plane.at(a, b), mean = meanX(decode(z));
  state.pointer = { a, b, z, mean };
  const label = $("pointer-z"), zText = "z = (" + z.map((v) => v.toFixed(2)).join(", ") + ")";
  label.textContent = d === 2 ? zText : `(${a.toFixed(2)}, ${b.toFixed(2)}) on the plane`;
  label.title = zText;
  drawImage($("decoded"), mean);
}

function drawPath() {
  const canvas = $("path"), ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (state.path.length < 2) {
    ctx.fillStyle = "#888"; ctx.font = "13px sans-serif";
    ctx.fillText(state.path.length ? "now click a second code" : "click two codes on the plane: the path between them decodes here", 8, canvas.height / 2 + 4);
    return;
  }
  const [[a0, b0], [a1, b1]] = state.path, frames = 10, w = canvas.height;
  for (let k = 0; k < frames; k++) {
    const t = k / (frames - 1), tile = document.createElement("canvas");
    tile.width = w; tile.height = w;
    drawImage(tile, meanX(decode(state.plane.at(a0 + t * (a1 - a0), b0 + t * (b1 - b0)))));
    ctx.drawImage(tile, k * w, 0);
  }
  $("path-ends").textContent = "from (" + [a0, b0].map((v) => v.toFixed(2)).join(", ") + ") to (" + [a1, b1].map((v) => v.toFixed(2)).join(", ") + ") on the plane";
}

// ----- the image explained -----
const drawn = new Float64Array(D_PIXELS);
function testImage(i) { return IMAGES.subarray(i * D_PIXELS, (i + 1) * D_PIXELS); }
function modelView(values) {  // a drawing as the likelihood's x
  const x = new Float64Array(D_PIXELS);
  for (let i = 0; i < D_PIXELS; i++) {
    const v = Math.min(Math.max(values[i], 0), 1);
    x[i] = LIK.name === "bernoulli" ? (v > 0.5 ? 1 : 0) : (LIK.bins ? (Math.round(255 * v) + 0.5) / 256 : v);
  }
  return x;
}

function explain(x, source) {
  const qPhi = encode(x);
  const plane = d === 2 ? planeOf([0, 0], [1, 0], [0, 1]) : planeOf(qPhi.mean, state.plane.u1, state.plane.u2);
  const grid = posteriorGrid(x, qPhi, plane);
  state.explained = { x, source, qPhi, plane, grid };
  if ($("anchor").value === "explained") drawPlane();
  drawImage($("drawing"), x);
  resetQ();
}
function currentQ() {
  const e = state.explained, shift = [parseFloat($("shift-1").value), parseFloat($("shift-2").value)];
  const scale = Math.pow(2, parseFloat($("scale").value));
  $("scale-value").textContent = scale.toFixed(2);
  return { mean: e.qPhi.mean.map((m, i) => m + shift[0] * e.plane.u1[i] + shift[1] * e.plane.u2[i]),
           logScale: e.qPhi.logScale.map((l) => l + Math.log(scale)) };
}
function resetQ() {
  // q's mean moves within the grid: the sliders span it.
  const e = state.explained, g = e.grid, n = g.size, centre = qOnPlane(e.qPhi, e.plane).mean;
  [[g.z1, "shift-1"], [g.z2, "shift-2"]].forEach(([axis, id], i) => {
    const slider = $(id);
    slider.min = axis[0] - centre[i]; slider.max = axis[n - 1] - centre[i];
    slider.step = "any"; slider.value = 0;  // "any": 0 is not snapped to a step from min
  });
  $("scale").value = 0;
  updateQ();
}

function updateQ() {
  const e = state.explained, q = currentQ();
  e.q = q;
  e.numbers = d === 2 ? boundsOnGrid(e.grid, q) : boundsBySampling(e.x, q);
  drawPosterior();
  showNumbers();
}

function drawPosterior() {
  const e = state.explained, g = e.grid, canvas = $("posterior"), ctx = canvas.getContext("2d"), n = g.size;
  let top = -Infinity;
  for (const v of g.lj) if (v > top) top = v;
  const small = document.createElement("canvas"); small.width = n; small.height = n;
  const sctx = small.getContext("2d"), img = sctx.createImageData(n, n);
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) {
    const v = Math.exp(g.lj[r * n + k] - top), row = n - 1 - r;  // z2 upwards
    img.data.set([255 - 200 * v, 255 - 120 * v, 255 - 30 * v, 255], 4 * (row * n + k));
  }
  sctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  const span = (v, lo, hi, size) => ((v - lo) / (hi - lo)) * size;
  const px = (a) => span(a, g.z1[0], g.z1[n - 1], canvas.width), py = (b) => canvas.height - span(b, g.z2[0], g.z2[n - 1], canvas.height);
  const drawQ = (q, colour, dash) => {
    const qp = qOnPlane(q, e.plane), [[sa, sab], [, sb]] = qp.cov;
    const tr = sa + sb, det = sa * sb - sab * sab, l1 = tr / 2 + Math.sqrt(tr * tr / 4 - det), l2 = tr / 2 - Math.sqrt(Math.max(tr * tr / 4 - det, 0));
    const angle = Math.abs(sab) < 1e-12 ? (sa >= sb ? 0 : Math.PI / 2) : Math.atan2(l1 - sa, sab);
    ctx.strokeStyle = colour; ctx.setLineDash(dash);
    for (const k of [1, 2]) {
      ctx.beginPath();
      for (let t = 0; t <= 64; t++) {
        const th = (2 * Math.PI * t) / 64, u = k * Math.sqrt(l1) * Math.cos(th), v = k * Math.sqrt(Math.max(l2, 0)) * Math.sin(th);
        const a = qp.mean[0] + u * Math.cos(angle) - v * Math.sin(angle), b = qp.mean[1] + u * Math.sin(angle) + v * Math.cos(angle);
        t ? ctx.lineTo(px(a), py(b)) : ctx.moveTo(px(a), py(b));
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  };
  ctx.lineWidth = 2;
  if (e.q !== e.qPhi) drawQ(e.qPhi, "#999", [4, 4]);
  drawQ(e.q, "#d62728", []);
  ctx.lineWidth = 1;
  ctx.fillStyle = "#000"; ctx.font = "11px sans-serif";
  const label = d === 2 ? ["z1", "z2"] : ["u1", "u2"];
  ctx.fillText(`${label[0]}: ${g.z1[0].toFixed(2)} .. ${g.z1[n - 1].toFixed(2)}   ${label[1]}: ${g.z2[0].toFixed(2)} .. ${g.z2[n - 1].toFixed(2)}`, 4, canvas.height - 4);
}

function showNumbers() {
  const e = state.explained, r = e.numbers, q = e.q;
  let klPrior = 0;
  for (let i = 0; i < d; i++) klPrior += 0.5 * (q.mean[i] ** 2 + Math.exp(2 * q.logScale[i]) - 1 - 2 * q.logScale[i]);
  const rows = [
    ["log p<sub>θ</sub>(x)", r.log_px, "log-px"],
    ["ELBO(q) = E<sub>q</sub>[log p<sub>θ</sub>(x|z)] − KL(q ‖ p(z))", r.elbo, "elbo"],
    ["KL(q ‖ p<sub>θ</sub>(z|x)) = log p<sub>θ</sub>(x) − ELBO(q)", r.kl, "kl"],
    ["E<sub>q</sub>[log p<sub>θ</sub>(x|z)]", r.elbo + klPrior, "reconstruction"],
    ["KL(q ‖ p(z)), closed form", klPrior, "kl-prior"],
  ];
  $("numbers").innerHTML = rows.map(([name, v, id]) => `<tr><td>${name}</td><td class="v" id="n-${id}">${v.toFixed(4)}</td></tr>`).join("");
  const q0 = "q = " + (q === e.qPhi || (q.mean.every((m, i) => m === e.qPhi.mean[i]) && q.logScale.every((l, i) => l === e.qPhi.logScale[i])) ? "q<sub>φ</sub>(z|x), the encoder's" : "moved by hand");
  $("numbers-note").innerHTML = `${q0}; x: ${e.source}. ` + (r.method === "grid"
    ? `By quadrature on the ${e.grid.size}×${e.grid.size} grid (q's mass on it ${(100 * r.q_mass_on_grid).toFixed(1)}%` +
      (r.q_mass_on_grid < 0.99 ? ": the numbers are those of q restricted to the grid)." : ").")
    : `d = ${d}: the heat map is the slice of p<sub>θ</sub>(z|x) on the plane through q's mean; ELBO by Monte Carlo and log p(x) by importance sampling from q (k = ${r.k}), so KL is an estimate.`);
}

// ----- wiring -----
function setImage(i) {
  i = Math.min(Math.max(i, 0), DATA.n_images - 1);
  $("image-index").value = i;
  explain(Float64Array.from(testImage(i)), `test image ${i}`);
}
function init() {
  $("model-name").textContent = DATA.name;
  $("model-summary").innerHTML = `epoch ${DATA.epoch}; d = ${d}; encoder and decoder MLPs (${DATA.activation}), ` +
    `p<sub>θ</sub>(x|z) ${LIK.name}${LIK.bins ? " (8-bit data)" : ""}, p(z) = N(0, I); ${DATA.n_points} test codes, ${DATA.n_images} test images to explain.`;
  $("legend").innerHTML = COLOURS.map((c, k) => `<span style="background:${c}"></span>${k}`).join("");
  if (d === 2) $("plane-controls").style.display = "none";
  $("coords-inputs").style.display = "none";
  for (const id of ["plane-mode", "coord-i", "coord-j", "anchor"]) {
    $(id).addEventListener("change", () => {
      $("coords-inputs").style.display = $("plane-mode").value === "coords" ? "" : "none";
      state.path = []; drawPlane(); drawPath();
    });
  }
  const plane = $("plane");
  plane.addEventListener("pointermove", (ev) => { const [a, b] = toPlane(plane, ev.offsetX, ev.offsetY); pointAt(a, b); });
  plane.addEventListener("click", (ev) => {
    const [a, b] = toPlane(plane, ev.offsetX, ev.offsetY);
    state.path = state.path.length === 1 ? [state.path[0], [a, b]] : [[a, b]];
    drawPlane(); drawPath();
  });
  $("image-index").addEventListener("change", () => setImage(parseInt($("image-index").value, 10) || 0));
  $("prev").addEventListener("click", () => setImage((parseInt($("image-index").value, 10) || 0) - 1));
  $("next").addEventListener("click", () => setImage((parseInt($("image-index").value, 10) || 0) + 1));
  for (const id of ["shift-1", "shift-2", "scale"]) $(id).addEventListener("input", updateQ);
  $("reset-q").addEventListener("click", resetQ);
  const pad = $("drawing");
  let painting = false, last = null;
  const dab = (cx, cy) => {  // a round brush about two pixels wide, like an MNIST pen stroke
    for (let r = Math.max(0, Math.floor(cy - 3)); r < Math.min(28, cy + 3); r++) {
      for (let k = Math.max(0, Math.floor(cx - 3)); k < Math.min(28, cx + 3); k++) {
        const dist2 = (k + 0.5 - cx) ** 2 + (r + 0.5 - cy) ** 2;
        drawn[r * 28 + k] = Math.max(drawn[r * 28 + k], Math.exp(-dist2 / 1.5));
      }
    }
  };
  const paint = (ev) => {  // the segment from the last pointer position, in steps of a quarter pixel
    const cx = (ev.offsetX / pad.width) * 28, cy = (ev.offsetY / pad.height) * 28;
    const [x0, y0] = last || [cx, cy], steps = Math.max(1, Math.ceil(4 * Math.hypot(cx - x0, cy - y0)));
    for (let t = 1; t <= steps; t++) dab(x0 + ((cx - x0) * t) / steps, y0 + ((cy - y0) * t) / steps);
    last = [cx, cy];
    drawImage(pad, drawn);
  };
  pad.addEventListener("pointerdown", (ev) => {
    if (!state.explained || state.explained.source !== "your drawing") drawn.fill(0);
    painting = true; last = null; pad.setPointerCapture(ev.pointerId); paint(ev);
  });
  pad.addEventListener("pointermove", (ev) => { if (painting) paint(ev); });
  pad.addEventListener("pointerup", () => { painting = false; explain(modelView(drawn), "your drawing"); });
  $("clear").addEventListener("click", () => { drawn.fill(0); explain(modelView(drawn), "your drawing"); });
  drawPlane();
  setImage(0);
  pointAt(0, 0);
  drawPath();
}

// For scripts and tests: the model and the page's state.
window.explorer = {
  data: DATA, state, encode, decode, meanX, logLikelihood, setImage, explain, pointAt,
  // Timings in ms (performance.now()): one decode of z, and the posterior grid of an image.
  benchmark(repeats = 5) {
    const t = [], g = [], z = new Array(d).fill(0.1);
    for (let k = 0; k < 200; k++) { const t0 = performance.now(); decode(z); t.push(performance.now() - t0); }
    const x = Float64Array.from(testImage(0)), q = encode(x);
    const plane = d === 2 ? planeOf([0, 0], [1, 0], [0, 1]) : planeOf(q.mean, state.plane.u1, state.plane.u2);
    for (let k = 0; k < repeats; k++) { const t0 = performance.now(); posteriorGrid(x, q, plane); g.push(performance.now() - t0); }
    const median = (a) => a.slice().sort((p, r) => p - r)[Math.floor(a.length / 2)];
    return { decode_ms: median(t), grid_ms: median(g), grid_points: DATA.grid.coarse ** 2 + DATA.grid.size ** 2 };
  },
};
try { init(); } catch (err) { $("status").textContent = "error: " + err.message; throw err; }
