"""The in-page image viewer's browser side: JavaScript run by `gr.HTML(js_on_load=...)`, and its CSS.

The component's value is a JSON payload (see `ui.viewer`). Grey images arrive as 16-bit values
with the range they stand for, so the window is applied here, on the real values, at every
drag; colour images (overlays) arrive as PNG. The canvas is redrawn with smoothing, so a small
image scaled up is interpolated rather than drawn as blocks.

Mouse: wheel zooms about the pointer; left drag pans (or sets the window with the W/L tool);
right drag always sets the window (horizontal: width, vertical: level); double click resets.
Keys (canvas focused): + and - zoom, arrows pan, 0 fits, w switches the left-drag tool.
"""

VIEWER_JS = r"""
const root = element;
const view = {zoom: 1, px: 0, py: 0, tool: 'pan', center: 0, width: 1, key: null, preset: null};
let payload = null, src = null, lut = null, values = null, canvas = null, readout = null, frame = 0;

function setData() {
  root.dataset.zoom = view.zoom.toFixed(3);
  root.dataset.pan = Math.round(view.px) + ',' + Math.round(view.py);
  if (payload && payload.kind === 'grey') {
    root.dataset.center = view.center.toPrecision(6);
    root.dataset.width = view.width.toPrecision(6);
  }
}

function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }

function showReadout() {
  if (!readout || !payload) return;
  const unit = payload.unit ? ' ' + payload.unit : '';
  const wl = payload.kind === 'grey' ? 'W ' + fmt(view.width) + ' L ' + fmt(view.center) + unit + ' · ' : '';
  readout.textContent = wl + 'zoom ' + Math.round(view.zoom * 100) + '%';
}

function applyWindow() {
  if (!payload || payload.kind !== 'grey' || !values) return;
  const lo = payload.lo, span = (payload.hi - payload.lo) / 65535, c = view.center, w = Math.max(view.width, 1e-6);
  for (let i = 0; i < 65536; i++) {
    const g = ((lo + i * span) - (c - w / 2)) / w;
    lut[i] = g <= 0 ? 0 : g >= 1 ? 255 : Math.round(g * 255);
  }
  const ctx = src.getContext('2d'), img = ctx.createImageData(payload.w, payload.h), d = img.data;
  for (let k = 0, n = values.length; k < n; k++) {
    const g = lut[values[k]], j = 4 * k;
    d[j] = g; d[j + 1] = g; d[j + 2] = g; d[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function draw() {
  frame = 0;
  if (!canvas || !src) return;
  const dpr = window.devicePixelRatio || 1, cw = canvas.clientWidth, ch = canvas.clientHeight;
  if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
    canvas.width = Math.round(cw * dpr); canvas.height = Math.round(ch * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = '#000'; ctx.fillRect(0, 0, cw, ch);
  const w = payload.w, h = payload.h * payload.aspect;
  const scale = Math.min(cw / w, ch / h) * view.zoom;
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(src, cw / 2 + view.px - w * scale / 2, ch / 2 + view.py - h * scale / 2, w * scale, h * scale);
  setData(); showReadout();
}

function redraw() { setData(); showReadout(); if (!frame) frame = requestAnimationFrame(draw); }

function zoomBy(f, mx, my) {
  const z = Math.min(Math.max(view.zoom * f, 0.25), 32), g = z / view.zoom;
  view.px = mx - (mx - view.px) * g; view.py = my - (my - view.py) * g; view.zoom = z; redraw();
}

function reset() {
  view.zoom = 1; view.px = 0; view.py = 0;
  if (payload && payload.kind === 'grey') { view.center = payload.center; view.width = payload.width; applyWindow(); }
  redraw();
}

function button(bar, label, title, act) {
  const b = document.createElement('button');
  b.type = 'button'; b.textContent = label; b.title = title; b.className = 'mv-btn';
  b.addEventListener('click', act); bar.appendChild(b); return b;
}

function build() {
  const raw = props.value;
  root.innerHTML = '';
  root.classList.add('mv');
  if (!raw) { root.innerHTML = '<div class="mv-empty">No image</div>'; payload = null; src = null; setData(); return; }
  let p;
  try { p = typeof raw === 'string' ? JSON.parse(raw) : raw; } catch (e) { root.textContent = 'The image data could not be read.'; return; }
  const same = view.key !== null && view.key === p.key;
  payload = p;
  if (!same) { view.zoom = 1; view.px = 0; view.py = 0; }
  if (p.kind === 'grey' && !(same && view.preset === p.preset)) { view.center = p.center; view.width = p.width; }
  view.key = p.key; view.preset = p.preset;

  const bar = document.createElement('div'); bar.className = 'mv-bar';
  const pan = button(bar, 'Pan', 'Left drag pans (right drag sets the window)', () => setTool('pan'));
  const wl = p.kind === 'grey' ? button(bar, 'W/L', 'Left drag sets the window: horizontal width, vertical level', () => setTool('wl')) : null;
  button(bar, '+', 'Zoom in', () => zoomBy(1.25, 0, 0));
  button(bar, '\u2212', 'Zoom out', () => zoomBy(0.8, 0, 0));
  button(bar, 'Fit', 'Fit the image and reset the window', reset);
  readout = document.createElement('span'); readout.className = 'mv-readout'; bar.appendChild(readout);
  function setTool(t) {
    view.tool = t; pan.classList.toggle('mv-on', t === 'pan'); if (wl) wl.classList.toggle('mv-on', t === 'wl');
  }
  setTool(p.kind === 'grey' ? view.tool : 'pan');

  const stage = document.createElement('div'); stage.className = 'mv-stage';
  canvas = document.createElement('canvas'); canvas.className = 'mv-canvas'; canvas.tabIndex = 0;
  canvas.setAttribute('role', 'img'); canvas.setAttribute('aria-label', p.caption || 'image');
  stage.appendChild(canvas);
  const m = p.markers || {};
  for (const side of ['left', 'right', 'top', 'bottom']) {
    if (!m[side]) continue;
    const s = document.createElement('span'); s.className = 'mv-marker mv-' + side; s.textContent = m[side]; stage.appendChild(s);
  }
  const cap = document.createElement('div'); cap.className = 'mv-caption';
  cap.textContent = (p.caption || '') + (p.note ? ' \u2014 ' + p.note : '');
  root.appendChild(bar); root.appendChild(stage); root.appendChild(cap);

  src = document.createElement('canvas'); src.width = p.w; src.height = p.h;
  if (p.kind === 'grey') {
    const bytes = Uint8Array.from(atob(p.data), ch => ch.charCodeAt(0));
    values = new Uint16Array(bytes.buffer); lut = new Uint8ClampedArray(65536);
    applyWindow(); redraw();
  } else {
    const im = new Image();
    im.onload = () => { src.getContext('2d').drawImage(im, 0, 0); redraw(); };
    im.src = 'data:image/png;base64,' + p.data;
  }

  let drag = null;
  canvas.addEventListener('contextmenu', e => e.preventDefault());
  canvas.addEventListener('pointerdown', e => {
    canvas.focus(); canvas.setPointerCapture(e.pointerId);
    const mode = (e.button === 2 || view.tool === 'wl') && payload.kind === 'grey' ? 'wl' : 'pan';
    drag = {mode, x: e.clientX, y: e.clientY, px: view.px, py: view.py, c: view.center, w: view.width};
  });
  canvas.addEventListener('pointermove', e => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.mode === 'pan') { view.px = drag.px + dx; view.py = drag.py + dy; redraw(); return; }
    const range = Math.max(payload.hi - payload.lo, 1e-6);
    view.width = Math.max(drag.w + dx * range / Math.max(canvas.clientWidth, 1), range / 1000);
    view.center = drag.c - dy * range / Math.max(canvas.clientHeight, 1);
    applyWindow(); redraw();
  });
  const end = e => { drag = null; };
  canvas.addEventListener('pointerup', end); canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('wheel', e => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomBy(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left - r.width / 2, e.clientY - r.top - r.height / 2);
  }, {passive: false});
  canvas.addEventListener('dblclick', reset);
  canvas.addEventListener('keydown', e => {
    const keys = {'+': () => zoomBy(1.25, 0, 0), '=': () => zoomBy(1.25, 0, 0), '-': () => zoomBy(0.8, 0, 0), '0': reset,
      'ArrowLeft': () => { view.px -= 20; redraw(); }, 'ArrowRight': () => { view.px += 20; redraw(); },
      'ArrowUp': () => { view.py -= 20; redraw(); }, 'ArrowDown': () => { view.py += 20; redraw(); },
      'w': () => setTool(view.tool === 'wl' ? 'pan' : 'wl')};
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  if (window.ResizeObserver) new ResizeObserver(redraw).observe(stage);
}

build();
watch('value', build);
"""

VIEWER_CSS = """
.mv{display:flex;flex-direction:column;gap:4px}
.mv-empty{color:#6b7280;padding:1em;border:1px dashed #d1d5db;border-radius:4px;text-align:center}
.mv-bar{display:flex;gap:4px;align-items:center;flex-wrap:wrap;font-size:85%}
.mv-btn{border:1px solid #9ca3af;background:#f9fafb;border-radius:4px;padding:1px 8px;cursor:pointer;min-width:2em}
.mv-btn.mv-on{background:#1e3a8a;color:#fff;border-color:#1e3a8a}
.mv-readout{margin-left:auto;font-variant-numeric:tabular-nums;color:#374151}
.mv-stage{position:relative;height:var(--mv-height,460px);background:#000;border-radius:4px;overflow:hidden}
.mv-canvas{width:100%;height:100%;display:block;touch-action:none;cursor:grab}
.mv-canvas:focus{outline:2px solid #2563eb}
.mv-marker{position:absolute;color:#fde047;font:bold 15px ui-monospace,monospace;text-shadow:0 0 3px #000;pointer-events:none}
.mv-left{left:6px;top:50%;transform:translateY(-50%)}.mv-right{right:6px;top:50%;transform:translateY(-50%)}
.mv-top{top:4px;left:50%;transform:translateX(-50%)}.mv-bottom{bottom:4px;left:50%;transform:translateX(-50%)}
.mv-caption{font-size:85%;color:#374151}
"""
