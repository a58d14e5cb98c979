// The attention lens: computes and paints attention rows in the browser.
//
// Python sends each head's queries and keys (fp16 or fp32, base64) once per image and
// module (data.kind "qk"); the row of the query under the cursor is
// softmax(q_i . K^T * qk_scale), Nk d multiplications, computed here in double precision over
// the key grid (data.keys, coarser than the query grid data.grid when keys are pooled) and
// painted into a canvas of the input's size (data.input, any H x W) that CSS enlarges
// (image-rendering: pixelated). A module known only as its matrix sends it (kind "matrix",
// fp16) or, past a byte budget, nothing (kind "server"): then only the pinned query's row,
// data.row, is painted, and hovering marks the query's cell. Only a click (or the keyboard, after a pause) goes back to
// Python, as the state value "query" (or "guess" in guess mode), so the other panels follow.
// appkit.lens.wire.browser_row is this computation in numpy; the tests compare the two.
//
// Streamlit calls the default export again whenever the data changes: the DOM is built
// once and reused (the canvas keeps the keyboard focus), listeners are re-attached.
//
// Optional, per page: outlines of the fewest cells that hold given shares of the row
// (data.outlines, e.g. [0.5, 0.9]; convattn.readout.lens.mass_cells is the same rule), a
// log colour scale (data.log) and, in guess mode, the attention inside the guessed disc
// written on its circle.

const LOG_SPAN = 1000;  // a log scale shows three decades below the top of its range
const HALF = (() => {
  // Every fp16 bit pattern as a float: decoding is then one lookup per number.
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    t[h] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity)
      : s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return t;
})();

function bytes(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function halves(b64, Out = Float64Array) {
  const u8 = bytes(b64), u16 = new Uint16Array(u8.buffer), out = new Out(u16.length);
  for (let i = 0; i < u16.length; i++) out[i] = HALF[u16[i]];
  return out;
}

function numbers(b64, dtype) {
  // fp16 or fp32 values as float64, the precision the rows are computed in.
  return dtype === "float32" ? Float64Array.from(new Float32Array(bytes(b64).buffer)) : halves(b64);
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function build(parent) {
  const root = el("div", "lens-root", parent);
  const row = el("div", "lens-row", root);
  const left = el("div", "lens-left", row);
  const stage = el("div", "lens-stage", left);
  const canvas = el("canvas", "lens-main", stage);
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "Attention lens: hover or click a pixel to see where it " +
    "looks; the arrow keys move the pinned query");
  el("canvas", "lens-outline", stage);  // the mass outlines, at the screen's resolution
  for (const c of ["lens-cell", "lens-light", "lens-query", "lens-guess", "lens-guess-label"]) {
    el("div", c, stage);
  }
  const bar = el("div", "lens-bar", left);
  el("div", "lens-gradient", bar);
  const labels = el("div", "lens-labels", bar);
  for (const c of ["lens-lo", "lens-mid", "lens-hi"]) el("span", c, labels);
  el("div", "lens-readout", left);
  el("div", "lens-mass", left);
  el("div", "lens-caption", left);
  el("div", "lens-note", left);
  const space = el("div", "lens-space", row);
  const sc = el("canvas", "lens-space-canvas", space);
  const tools = el("div", "lens-tools", space);
  for (const [v, label] of [["role", "colour by role"], ["position", "colour by position"]]) {
    const b = el("button", "lens-colour", tools);
    b.type = "button"; b.dataset.colour = v; b.textContent = label;
  }
  el("div", "lens-legend", space);
  root.__state = { colour: "role", cache: {}, timings: [] };
  root.__canvas = canvas; root.__space = sc;
  return root;
}

function decode(st, data) {
  // Decoded arrays are kept while the image and module stay the same.
  const c = st.cache;
  if (c.q !== data.q) { c.Q = data.q ? numbers(data.q, data.dtype) : null; c.q = data.q; }
  if (c.k !== data.k) { c.K = data.k ? numbers(data.k, data.dtype) : null; c.k = data.k; }
  if (c.m !== data.matrix) { c.M = data.matrix ? halves(data.matrix, Float32Array) : null; c.m = data.matrix; }
  if (c.r !== data.row) { c.R = data.row ? Float64Array.from(new Float32Array(bytes(data.row).buffer)) : null; c.r = data.row; }
  if (c.image !== data.image) { c.img = bytes(data.image); c.image = data.image; }
  if (c.lut !== data.lut) { c.L = bytes(data.lut); c.lut = data.lut; }
  const xy = data.space ? data.space.points : null;
  if (c.xy !== xy) { c.P = xy ? new Float32Array(bytes(xy).buffer) : null; c.xy = xy; c.drawn = null; }
}

function attentionRow(d, c, qi) {
  // softmax(q_i . K^T * scale) of the chosen head, or the mean of the heads' rows, over
  // the Nk keys; from the matrix for kind "matrix"; null for kind "server" (its rows come
  // from Python: data.row, the pinned query's).
  const nq = d.grid[0] * d.grid[1], n = d.keys[0] * d.keys[1], dim = d.dim, scale = d.qk_scale;
  const heads = d.head < 0 ? [...Array(d.heads).keys()] : [d.head];
  const out = new Float64Array(n), s = new Float64Array(n);
  if (d.kind === "server") return null;
  if (d.kind === "matrix") {
    for (const t of heads) {
      const o = (t * nq + qi) * n;
      for (let j = 0; j < n; j++) out[j] += c.M[o + j] / heads.length;
    }
    return out;
  }
  for (const t of heads) {
    const qo = (t * nq + qi) * dim;
    let max = -Infinity;
    for (let j = 0; j < n; j++) {
      const ko = (t * n + j) * dim;
      let acc = 0;
      for (let x = 0; x < dim; x++) acc += c.Q[qo + x] * c.K[ko + x];
      s[j] = acc * scale;
      if (s[j] > max) max = s[j];
    }
    let sum = 0;
    for (let j = 0; j < n; j++) { s[j] = Math.exp(s[j] - max); sum += s[j]; }
    for (let j = 0; j < n; j++) out[j] += s[j] / sum / heads.length;
  }
  return out;
}

function range(d, row) {
  // As appkit.analysis.attention_range: shared 0..largest weight of the image, else the
  // row's own min..max; a row flat to 1% of 1/N gets 0..2/N (one even colour). On a log
  // scale the bottom is raised to at most LOG_SPAN times below the top (log 0 is -inf),
  // and a flat row gets 0.5/N..2/N, so that it too is drawn in the middle colour
  // (appkit.lens.wire.browser_range).
  const n = row.length;
  let lo = Infinity, hi = -Infinity;
  if (d.scale === "shared") { lo = 0; hi = d.max_weight; } else {
    for (const v of row) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (hi - lo < 0.01 / n) return d.log ? [0.5 / n, 2 / n] : [0, 2 / n];
    hi = Math.max(hi, lo + 1e-9);
  }
  return d.log ? [Math.max(lo, hi / LOG_SPAN), hi] : [lo, hi];
}

function colourIndex(d, v, lo, hi) {
  // Where weight v falls on the colour map, 0..255 (appkit.lens.wire.browser_colour_index).
  const t = d.log ? (Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))
    : (v - lo) / (hi - lo);
  return Math.min(255, Math.max(0, Math.round(t * 255)));
}

function massCells(row, fractions) {
  // convattn.readout.lens.mass_cells: for each fraction f, the fewest cells holding f of
  // the row: the largest weights first (ties: lower index first), added in that order
  // until their sum reaches f times the whole sum added the same way. The running sums
  // depend only on the weights in that order, so they come from the weights sorted
  // natively (no comparator: fast at 16,384 cells); the k cells are then those above the
  // k-th largest weight and, at that weight, the lowest indices.
  const n = row.length, sorted = Float64Array.from(row).sort();  // ascending
  const running = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) { acc += sorted[n - 1 - i]; running[i] = acc; }
  return fractions.map((f) => {
    const goal = f * running[n - 1];
    let k = 0;
    while (k < n - 1 && running[k] < goal) k++;
    const cut = sorted[n - 1 - k], mask = new Uint8Array(n);
    let count = 0;
    for (let j = 0; j < n; j++) if (row[j] > cut) { mask[j] = 1; count++; }
    for (let j = 0; j < n && count < k + 1; j++) if (row[j] === cut) { mask[j] = 1; count++; }
    return { fraction: f, count: k + 1, mask };
  });
}

function discMass(d, row, guess, radius) {
  // convattn.readout.lens.guess_score's mass: the cells whose centre lies within radius
  // input pixels of the guessed pixel's centre, and always the guessed cell.
  const [gh, gw] = d.keys, [H, W] = d.input, home = cellOf(d, guess, d.keys);
  let m = 0;
  for (let r = 0; r < gh; r++) {
    for (let c = 0; c < gw; c++) {
      const dy = (r + 0.5) * H / gh - (guess[0] + 0.5), dx = (c + 0.5) * W / gw - (guess[1] + 0.5);
      if (dy * dy + dx * dx <= radius * radius || (r === home[0] && c === home[1])) m += row[r * gw + c];
    }
  }
  return m;
}

function drawOutlines(oc, d, masses) {
  // The boundary of each cell set: the sides of its cells whose neighbour is not in it.
  // White over a dark halo, so that it shows on every colour of the map; the first set
  // solid, the next ones dashed. The larger sets go first: where boundaries coincide,
  // the smaller set's solid line stays on top. Lines on the image's edge are drawn just
  // inside it.
  const [SW, SH] = stageSize(d), dpr = window.devicePixelRatio || 1;
  if (oc.width !== Math.round(SW * dpr) || oc.height !== Math.round(SH * dpr)) {
    oc.width = Math.round(SW * dpr); oc.height = Math.round(SH * dpr);
  }
  const g = oc.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, SW, SH);
  if (!masses) return;
  const [gh, gw] = d.keys, sy = SH / gh, sx = SW / gw;
  const atX = (v) => Math.min(SW - 1.5, Math.max(1.5, v)), atY = (v) => Math.min(SH - 1.5, Math.max(1.5, v));
  masses.map((m, i) => [m, i]).reverse().forEach(([m, i]) => {
    const path = new Path2D(), inside = (r, c) => r >= 0 && c >= 0 && r < gh && c < gw && m.mask[r * gw + c];
    const line = (x0, y0, x1, y1) => { path.moveTo(atX(x0), atY(y0)); path.lineTo(atX(x1), atY(y1)); };
    for (let r = 0; r < gh; r++) {
      for (let c = 0; c < gw; c++) {
        if (!inside(r, c)) continue;
        const x0 = c * sx, x1 = (c + 1) * sx, y0 = r * sy, y1 = (r + 1) * sy;
        if (!inside(r - 1, c)) line(x0, y0, x1, y0);
        if (!inside(r + 1, c)) line(x0, y1, x1, y1);
        if (!inside(r, c - 1)) line(x0, y0, x0, y1);
        if (!inside(r, c + 1)) line(x1, y0, x1, y1);
      }
    }
    g.setLineDash(i === 0 ? [] : [4, 3]);
    g.lineCap = "square";
    g.lineWidth = 4; g.strokeStyle = "rgba(0,0,0,0.8)"; g.stroke(path);
    g.lineWidth = 2; g.strokeStyle = "#ffffff"; g.stroke(path);
  });
}

function percent(f) { return `${Math.round(100 * f)}%`; }

function massLegend(d, masses) {
  // What the outlines enclose, in words (appkit.lens.mass_legend says the same).
  if (!masses) return "";
  const n = d.keys[0] * d.keys[1], what = perPixel(d, d.keys) ? "pixels" : "cells";
  const styles = ["solid", "dashed"], parts = masses.map((m, i) =>
    `${percent(m.fraction)} (${styles[Math.min(i, 1)]})`);
  const counts = masses.map((m) => m.count.toLocaleString("en-US"));
  const join = (xs) => xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`;
  return `Outlined: the fewest ${what} that hold ${join(parts)} of this row's attention: ` +
    `${join(counts)} of ${n.toLocaleString("en-US")}.`;
}

function cellOf(d, p, grid = d.grid) {
  // The cell of input pixel p on a grid (the queries' by default), as Grid.cell_of.
  return [Math.floor(p[0] * grid[0] / d.input[0]), Math.floor(p[1] * grid[1] / d.input[1])];
}

function perPixel(d, grid) { return grid[0] === d.input[0] && grid[1] === d.input[1]; }

function stageSize(d) {
  // [width, height] of the enlarged image on screen: its longer side is data.display.
  const [H, W] = d.input, S = d.display;
  return W >= H ? [S, S * H / W] : [S * W / H, S];
}

function place(box, d, r, c, grid, show) {
  // Outline cell (r, c) of a grid of grid[0] x grid[1] cells on the enlarged image, a pixel
  // wider than the cell on each side but never past the image's edge (its 1 px dark halo
  // included): at the last column the square stays on the image.
  if (!show) { box.style.display = "none"; return; }
  const [SW, SH] = stageSize(d), sy = SH / grid[0], sx = SW / grid[1];
  const left = Math.max(1, c * sx - 1), top = Math.max(1, r * sy - 1);
  const right = Math.min(SW - 1, (c + 1) * sx + 1), bottom = Math.min(SH - 1, (r + 1) * sy + 1);
  Object.assign(box.style, { display: "block", left: `${left}px`, top: `${top}px`,
    width: `${right - left}px`, height: `${bottom - top}px` });
}

function fmt(v) {
  // A colour bar's weight, in the captions' format (0.0046, as "weight 0.0046" says it);
  // only weights under 0.001, which four decimals would flatten, in powers of ten.
  return v === 0 ? "0" : v >= 0.001 ? v.toFixed(4) : v.toExponential(2);
}

function describe(d, p, row) {
  // The pinned query's caption and note: appkit.lens.describe's sentences, from this row.
  const [gh, gw] = d.grid, [kh, kw] = d.keys, n = kh * kw, cell = cellOf(d, p);
  const coarse = !perPixel(d, d.grid);
  let best = 0, least = Infinity;
  for (let j = 0; j < n; j++) {
    if (row[j] > row[best]) best = j;
    if (row[j] < least) least = row[j];
  }
  const weight = row[best], r = Math.floor(best / kw), c = best % kw;
  const where = coarse ? ` (cell ${cell[0]}, ${cell[1]} of ${gh}x${gw})` : "";
  const what = perPixel(d, d.keys) ? "pixel" : "cell", low = least * n, high = weight * n;
  const query = `Query at row ${p[0]}, column ${p[1]}${where}`;
  const text = high - low < 0.01
    ? `${query} gives every ${what} the same weight, 1/N = ${(1 / n).toFixed(4)}, to within ` +
      "1%: its query scores all keys alike, so this row is uniform and is drawn in one colour."
    : `${query} attends most to the ${what} at row ${r}, column ${c}, weight ` +
      `${weight.toFixed(4)} (least: ${least.toFixed(4)}). Uniform attention would give every ` +
      `${what} ${(1 / n).toFixed(4)}: this row runs from ${low.toFixed(2)}x to ` +
      `${high.toFixed(2)}x that.`;
  let note = "";
  if (d.scale === "shared" && weight / d.max_weight < d.caption.faint) {
    note = "Faint on the shared scale: this row's weights reach under " +
      `${Math.ceil(100 * weight / d.max_weight)}% of the bar. Choose per map to see the pattern.`;
  }
  if (d.scale !== "shared" && high - low >= 0.01 && high < 1.5 && low > 1 / 1.5) {
    note = "Nearly uniform: every weight of this row is within a factor 1.5 of 1/N, and the " +
      "per-map colours stretch that small range. Choose shared to see it at its true contrast.";
  }
  return { text, note };
}

// The heavy part of the data (queries, keys, image, projection) may come in a separate
// "store" instance of this component, drawn outside the fragment that reruns on a click:
// the lens then gets only {ref, pinned, ...}, a few hundred bytes per click.
const STORE = (window.__convattnLensStore = window.__convattnLensStore || new Map());

function unpack(data) {
  // Python sends JSON in bytes (appkit.lens.wire.pack); a plain object is taken as it is.
  if (data instanceof Uint8Array || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    const view = data instanceof ArrayBuffer ? new Uint8Array(data)
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return JSON.parse(new TextDecoder().decode(view));
  }
  return data;
}

export default function (component) {
  const data = unpack(component.data);
  if (data.role === "store") {
    STORE.delete(data.ref);
    STORE.set(data.ref, data);
    while (STORE.size > 16) STORE.delete(STORE.keys().next().value);  // the oldest
    window.dispatchEvent(new CustomEvent("convattn-lens-store", { detail: data.ref }));
    return undefined;
  }
  if (data.ref && !STORE.has(data.ref)) {
    // The store's delta has not been handled yet: start once it has.
    const abort = new AbortController();
    window.addEventListener("convattn-lens-store", (ev) => {
      if (ev.detail === data.ref) { abort.abort(); cleanup = lens(component, data, STORE.get(data.ref)); }
    }, { signal: abort.signal });
    let cleanup = () => abort.abort();
    return () => cleanup();
  }
  return lens(component, data, data.ref ? STORE.get(data.ref) : {});
}

function lens(component, data, heavy) {
  const { parentElement, setStateValue } = component;
  const d = { ...heavy, ...data };
  const root = parentElement.querySelector(".lens-root") || build(parentElement);
  const st = root.__state, canvas = root.__canvas, sc = root.__space;
  const outline = root.querySelector(".lens-outline");
  decode(st, d);
  d.keys = d.keys || d.grid;
  if (d.qk_scale === undefined) d.qk_scale = 1 / Math.sqrt(d.dim);
  const c = st.cache, [gh, gw] = d.grid, nq = gh * gw, [kh, kw] = d.keys, n = kh * kw;
  const [H, W] = d.input;  // the input image, in pixels (convattn.readout.grid.Grid)
  if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(W, H);
  const stage = root.querySelector(".lens-stage"), [SW, SH] = stageSize(d);
  Object.assign(stage.style, { width: `${SW}px`, height: `${SH}px` });
  root.dataset.mode = d.mode;
  root.querySelector(".lens-gradient").style.background = `linear-gradient(to right, ${
    [0, 64, 128, 192, 255].map((i) => `rgb(${c.L[3 * i]},${c.L[3 * i + 1]},${c.L[3 * i + 2]})`)})`;
  root.querySelector(".lens-bar").style.width = `${d.display}px`;
  root.querySelector(".lens-left").style.maxWidth = `${d.display}px`;
  st.pinned = d.pinned.slice();
  st.guess = d.guess ? d.guess.slice() : null;
  st.lit = null;

  const hidden = () => d.mode === "guess" && !st.guess;

  function caption(p, row) {
    // Python's caption for the query it ran with; the lens's own, at once, for a query
    // clicked or moved since (Python's replaces it when its rerun arrives).
    const box = root.querySelector(".lens-caption"), note = root.querySelector(".lens-note");
    if (!d.caption) { box.textContent = ""; note.textContent = ""; return; }
    const python = same(p, d.pinned), said = python ? d.caption : describe(d, p, row);
    box.textContent = said.text; note.textContent = said.note;
    Object.assign(box.dataset, { source: python ? "python" : "browser", pixel: `${p[0]},${p[1]}` });
  }

  function paint(p, source) {
    // Paint the row of input pixel p = [row, col] (its cell's row) over the image.
    const t0 = performance.now();
    const cell = cellOf(d, p), qi = cell[0] * gw + cell[1];
    const px = img.data, a = d.opacity;
    let row = null, lo = 0, hi = 1;
    if (!hidden()) {
      row = d.kind === "server" ? (same(p, d.pinned) ? c.R : null) : attentionRow(d, c, qi);
      if (row) [lo, hi] = range(d, row);
    }
    const cols = new Int32Array(W);  // each pixel column's key column, once per paint
    for (let x = 0; x < W; x++) cols[x] = Math.floor(x * kw / W);
    for (let y = 0; y < H; y++) {
      const base = Math.floor(y * kh / H) * kw;
      for (let x = 0; x < W; x++) {
        const o = 4 * (y * W + x), i = 3 * (y * W + x);
        if (row) {
          const k = 3 * colourIndex(d, row[base + cols[x]], lo, hi);
          px[o] = Math.round(c.img[i] * (1 - a) + c.L[k] * a);
          px[o + 1] = Math.round(c.img[i + 1] * (1 - a) + c.L[k + 1] * a);
          px[o + 2] = Math.round(c.img[i + 2] * (1 - a) + c.L[k + 2] * a);
        } else {
          px[o] = c.img[i]; px[o + 1] = c.img[i + 1]; px[o + 2] = c.img[i + 2];
        }
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    place(root.querySelector(".lens-query"), d, p[0], p[1], d.input, true);
    place(root.querySelector(".lens-cell"), d, cell[0], cell[1], d.grid, !perPixel(d, d.grid));
    const g = root.querySelector(".lens-guess"), label = root.querySelector(".lens-guess-label");
    if (st.guess && d.mode === "guess") {
      const side = SW / W, r = d.radius * side, S = SH;
      const cx = (st.guess[1] + 0.5) * side, cy = (st.guess[0] + 0.5) * side;
      Object.assign(g.style, { display: "block", width: `${2 * r}px`, height: `${2 * r}px`,
        left: `${cx - r}px`, top: `${cy - r}px` });
      // The attention inside the circle, written on it: the pinned query's row, whatever
      // the mouse paints now.
      const key = `${st.pinned}|${st.guess}|${d.radius}`;
      if (st.guessKey !== key) {
        const pc = cellOf(d, st.pinned);
        st.guessMass = discMass(d, attentionRow(d, c, pc[0] * gw + pc[1]), st.guess, d.radius);
        st.guessKey = key;
      }
      label.textContent = `${(100 * st.guessMass).toFixed(1)}%`;
      label.style.display = "block";
      const lw = label.offsetWidth, lh = label.offsetHeight;
      const above = cy - r - lh - 2 >= 0, y = above ? cy - r - lh - 2 : Math.min(S - lh, cy + r + 2);
      Object.assign(label.style, { left: `${Math.min(SW - lw, Math.max(0, cx - lw / 2))}px`,
        top: `${Math.max(0, y)}px` });
      label.dataset.mass = `${st.guessMass}`;
    } else { g.style.display = "none"; label.style.display = "none"; }
    const masses = row && d.outlines && d.outlines.length ? massCells(row, d.outlines) : null;
    drawOutlines(outline, d, masses);
    root.querySelector(".lens-mass").textContent = massLegend(d, masses);
    // What the tests read back: the row painted, its query and where it came from.
    canvas.__lensRow = row;
    outline.__lensMass = masses ? masses.map((m) => Array.from(m.mask.keys()).filter((j) => m.mask[j])) : null;
    Object.assign(canvas.dataset, { query: qi, pixel: `${p[0]},${p[1]}`, source,
      painted: (Number(canvas.dataset.painted) || 0) + 1, hidden: row ? "no" : "yes" });
    readout(p, cell, row, lo, hi, source);
    if ((source === "pinned" || source === "key") && row) caption(p, row);
    drawSpace(qi, p);
    return t0;
  }

  function readout(p, cell, row, lo, hi, source) {
    const labels = root.querySelectorAll(".lens-labels span");
    const box = root.querySelector(".lens-readout");
    const where = perPixel(d, d.grid) ? `row ${p[0]}, column ${p[1]}` :
      `row ${p[0]}, column ${p[1]} (cell ${cell[0]}, ${cell[1]} of ${gh}x${gw})`;
    if (!row) {
      for (const s of labels) s.textContent = "";
      box.textContent = d.kind === "server" && d.mode !== "guess"
        ? `Position at ${where}: click to compute its row on the server.`
        : `The query is at ${where}: click where you think it looks.`;
      return;
    }
    labels[0].textContent = fmt(lo);
    labels[1].textContent = fmt(d.log ? Math.sqrt(lo * hi) : (lo + hi) / 2);
    labels[2].textContent = fmt(hi) + (d.log ? " (log scale)" : "");
    // One fact once: the pinned query is described by the page (the lens's caption on
    // Inspect, the page's own text on Compare and Predict then reveal); this line speaks
    // for the position under the mouse, in the caption's number format.
    const pinned = same(p, st.pinned) && !["hover", "linked", "space"].includes(source);
    if (pinned && (d.caption || d.pinned_said || d.mode === "guess")) { box.textContent = ""; return; }
    let best = 0;
    for (let j = 1; j < n; j++) if (row[j] > row[best]) best = j;
    const bw = row[best], br = Math.floor(best / kw), bc = best % kw;
    // Not "Query at ...": that is the page's own caption for the pinned query.
    box.textContent = `Position at ${where} looks most at ${perPixel(d, d.keys) ? "row" : "cell row"} ${br}, ` +
      `column ${bc}: weight ${bw.toFixed(4)} (${(bw * n).toFixed(2)}x uniform, ` +
      `1/N = ${(1 / n).toFixed(4)}).`;
  }

  // ---- the query/key space -------------------------------------------------------------
  const SPACE = d.space ? d.space.size : 0;
  root.querySelector(".lens-space").style.display = d.space ? "" : "none";
  if (d.space) { sc.width = SPACE; sc.height = SPACE; }
  let toScreen = null;
  if (c.P) {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < c.P.length; i += 2) {
      x0 = Math.min(x0, c.P[i]); x1 = Math.max(x1, c.P[i]);
      y0 = Math.min(y0, c.P[i + 1]); y1 = Math.max(y1, c.P[i + 1]);
    }
    // One scale for both axes (distances mean the same either way), the cloud centred.
    const m = 8, s = (SPACE - 2 * m) / Math.max(x1 - x0, y1 - y0, 1e-9);
    const ox = (SPACE - (x1 - x0) * s) / 2, oy = (SPACE - (y1 - y0) * s) / 2;
    toScreen = (i) => [ox + (c.P[2 * i] - x0) * s, SPACE - oy - (c.P[2 * i + 1] - y0) * s];
  }

  function colourOf(i) {
    // Points 0..nq-1 are the queries (query grid), then the nk keys (key grid).
    const key = i >= nq, j = key ? i - nq : i, [rows, cols] = key ? d.keys : d.grid;
    if (st.colour === "role") return key ? "#3b82f6" : "#f97316";
    const r = Math.floor(j / cols), col = j % cols;  // hue by column, lightness by row
    return `hsl(${Math.round(300 * col / Math.max(cols - 1, 1))},85%,${30 + Math.round(45 * r / Math.max(rows - 1, 1))}%)`;
  }

  function drawSpace(qi, p) {
    if (!c.P) return;
    if (!c.drawn || c.drawnColour !== st.colour) {
      // The 2N points once per colouring, into an offscreen canvas; a hover only adds rings.
      const off = document.createElement("canvas");
      off.width = SPACE; off.height = SPACE;
      const o = off.getContext("2d");
      for (let i = 0; i < nq + n; i++) {
        const [x, y] = toScreen(i);
        o.fillStyle = colourOf(i);
        if (i < nq) { o.beginPath(); o.arc(x, y, 2, 0, 2 * Math.PI); o.fill(); }
        else o.fillRect(x - 1.5, y - 1.5, 3, 3);
      }
      c.drawn = off; c.drawnColour = st.colour;
      const legend = root.querySelector(".lens-legend");
      legend.textContent = st.colour === "role"
        ? "● queries (orange), ■ keys (blue). " + d.space.caption
        : "Hue: column (red left → magenta right); lightness: row (dark top → light bottom). "
          + d.space.caption;
      for (const b of root.querySelectorAll(".lens-colour")) {
        b.setAttribute("aria-pressed", b.dataset.colour === st.colour ? "true" : "false");
      }
    }
    const g = sc.getContext("2d");
    g.clearRect(0, 0, SPACE, SPACE);
    g.drawImage(c.drawn, 0, 0);
    const kc = cellOf(d, p, d.keys);  // the key at the query's place
    for (const [i, colour] of [[qi, "#f97316"], [nq + kc[0] * kw + kc[1], "#3b82f6"]]) {
      const [x, y] = toScreen(i);
      g.lineWidth = 2; g.strokeStyle = "#000"; g.beginPath(); g.arc(x, y, 7, 0, 2 * Math.PI); g.stroke();
      g.lineWidth = 2; g.strokeStyle = colour; g.beginPath(); g.arc(x, y, 5, 0, 2 * Math.PI); g.stroke();
    }
    sc.dataset.lit = `${qi}`;
  }

  function nearestPoint(ev) {
    const b = sc.getBoundingClientRect(), x = (ev.clientX - b.left) * SPACE / b.width,
      y = (ev.clientY - b.top) * SPACE / b.height;
    let best = -1, bd = 64;  // within 8 px
    for (let i = 0; i < nq + n; i++) {
      const [px, py] = toScreen(i), dd = (px - x) ** 2 + (py - y) ** 2;
      if (dd < bd) { bd = dd; best = i; }
    }
    return best;
  }

  // ---- timing: from the event to the frame that shows it ---------------------------------
  // canvas.__lensTimings: for each hover or key press, in ms from the handler's start to
  // the requestAnimationFrame after the paint (the frame that shows it), to the end of that
  // frame's rendering, and from the event's own time stamp to that end (bench_lens reads
  // them; the last 5000 are kept).
  let pending = [];
  function painted(t0, stamp) {
    // A message posted from requestAnimationFrame runs once that frame's rendering is done.
    pending.push([t0, stamp]);
    if (pending.length > 1) return;
    requestAnimationFrame(() => {
      const raf = performance.now();
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        const now = performance.now();
        for (const [t, e] of pending) st.timings.push([raf - t, now - t, now - e]);
        if (st.timings.length > 5000) st.timings.splice(0, st.timings.length - 5000);
        pending = [];
      };
      ch.port2.postMessage(0);
    });
  }
  canvas.__lensTimings = st.timings;

  // ---- events ----------------------------------------------------------------------------
  const pixelOf = (ev) => {
    const b = canvas.getBoundingClientRect();
    return [Math.min(H - 1, Math.max(0, Math.floor((ev.clientY - b.top) * H / b.height))),
      Math.min(W - 1, Math.max(0, Math.floor((ev.clientX - b.left) * W / b.width)))];
  };
  // Listeners of an earlier call go now: Streamlit does not always run a call's cleanup
  // before the next call (two keydown listeners moved the query two pixels per press).
  if (root.__abort) root.__abort.abort();
  const abort = new AbortController(), on = { signal: abort.signal };
  root.__abort = abort;
  let hovered = null, keyTimer = null;
  const same = (a, b) => a && b && a[0] === b[0] && a[1] === b[1];
  const broadcast = (p) => d.group && window.dispatchEvent(new CustomEvent("convattn-lens",
    { detail: { group: d.group, pixel: p, from: root } }));
  const report = (name, p) => setStateValue(name, { row: p[0], col: p[1], n: Date.now() });

  canvas.addEventListener("mousemove", (ev) => {
    const t0 = performance.now(), p = pixelOf(ev);
    if (same(p, hovered)) return;
    hovered = p;
    if (hidden()) return;  // guess mode: nothing shows before the guess
    paint(p, "hover");
    painted(t0, ev.timeStamp);
    broadcast(p);
  }, on);
  canvas.addEventListener("mouseleave", () => {
    hovered = null;
    paint(st.pinned, "pinned");
    broadcast(null);
  }, on);
  canvas.addEventListener("click", (ev) => {
    const p = pixelOf(ev);
    canvas.focus({ preventScroll: true });
    if (d.mode === "guess") {
      if (st.guess) return;  // one guess per query; the page offers the next image
      st.guess = p;
      paint(st.pinned, "guess");
      report("guess", p);
      return;
    }
    st.pinned = p;
    canvas.dataset.clickedAt = `${ev.timeStamp}`;  // for bench_lens: click -> panels updated
    report("query", p);  // first: Python's rerun starts while the lens paints
    paint(p, "pinned");
  }, on);
  canvas.addEventListener("keydown", (ev) => {
    const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
    if (!step || d.mode === "guess") return;
    ev.preventDefault();
    // One cell per press (a coarse grid's cell is several input pixels).
    const dy = H / gh, dx = W / gw;
    st.pinned = [Math.min(H - 1, Math.max(0, st.pinned[0] + step[0] * dy)),
      Math.min(W - 1, Math.max(0, st.pinned[1] + step[1] * dx))];
    const t0 = performance.now();
    paint(st.pinned, "key");
    painted(t0, ev.timeStamp);
    broadcast(st.pinned);
    // Python follows once the keys rest, not on every press (each report is a rerun).
    clearTimeout(keyTimer);
    const p = st.pinned.slice();
    keyTimer = setTimeout(() => report("query", p), 300);
  }, on);
  window.addEventListener("convattn-lens", (ev) => {
    const { group, pixel, from } = ev.detail;
    if (group !== d.group || from === root || hidden()) return;
    paint(pixel || st.pinned, pixel ? "linked" : "pinned");
  }, on);
  sc.addEventListener("mousemove", (ev) => {
    // A point lights its pixel in the lens; a query point also shows that query's row.
    const i = nearestPoint(ev);
    if (i < 0 || hidden()) return;
    const key = i >= nq, j = key ? i - nq : i, grid = key ? d.keys : d.grid;
    const cell = [Math.floor(j / grid[1]), j % grid[1]];
    const p = [Math.floor((cell[0] + 0.5) * H / grid[0]), Math.floor((cell[1] + 0.5) * W / grid[1])];
    if (!key) paint(p, "space"); else paint(st.pinned, "pinned");
    place(root.querySelector(".lens-light"), d, cell[0], cell[1], grid, true);
    root.querySelector(".lens-light").dataset.role = key ? "key" : "query";
    root.querySelector(".lens-light").dataset.cell = `${j}`;
  }, on);
  sc.addEventListener("mouseleave", () => {
    root.querySelector(".lens-light").style.display = "none";
    paint(st.pinned, "pinned");
  }, on);
  for (const b of root.querySelectorAll(".lens-colour")) {
    b.addEventListener("click", () => {
      st.colour = b.dataset.colour;
      paint(hovered || st.pinned, "pinned");
    }, on);
  }

  root.querySelector(".lens-light").style.display = "none";
  paint(st.pinned, "pinned");
  return () => { abort.abort(); clearTimeout(keyTimer); };
}
