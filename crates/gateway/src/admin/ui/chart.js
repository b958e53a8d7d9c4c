// Small time-series charts, drawn as SVG by hand: one line (or two) over a
// fixed time span, the newest value written beside the title.

const NS = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 64;

function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/**
 * Draws `lines` ([{points: [[t, value]], cls}]) over [from, to] into a new
 * SVG element, scaled to the largest value (at least `floor`).
 */
export function drawChart(lines, from, to, floor = 1) {
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img' });
  let max = floor;
  for (const line of lines) for (const [, v] of line.points) if (v != null && v > max) max = v;
  max *= 1.1;
  const span = Math.max(1, to - from);
  for (const frac of [0.5]) {
    root.append(svg('line', { x1: 0, x2: W, y1: H * frac, y2: H * frac, class: 'grid' }));
  }
  for (const line of lines) {
    let d = '';
    let started = false;
    let lastX = 0;
    for (const [t, v] of line.points) {
      if (v == null) { started = false; continue; }
      const x = ((t - from) / span) * W;
      const y = H - (v / max) * (H - 2) - 1;
      d += `${started ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
      started = true;
      lastX = x;
    }
    if (!d) continue;
    if (line.area) {
      const first = d.slice(1).split(/[LM]/)[0].split(',')[0];
      root.append(svg('path', { d: `${d}L${lastX.toFixed(1)},${H}L${first},${H}Z`, class: `area ${line.cls}` }));
    }
    root.append(svg('path', { d, class: `line ${line.cls}`, 'vector-effect': 'non-scaling-stroke' }));
  }
  return { root, max };
}
