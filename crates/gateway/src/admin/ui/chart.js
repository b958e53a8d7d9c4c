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
    // Runs of consecutive values: a missing value (no traffic for a p95)
    // breaks the line rather than bridging the gap.
    const runs = [];
    let run = null;
    for (const [t, v] of line.points) {
      if (v == null) { run = null; continue; }
      if (!run) runs.push((run = []));
      run.push([(((t - from) / span) * W).toFixed(1), (H - (v / max) * (H - 2) - 1).toFixed(1)]);
    }
    let d = '';
    for (const r of runs) {
      const path = r.map(([x, y], i) => `${i ? 'L' : 'M'}${x},${y}`).join('');
      d += path;
      if (line.area) {
        root.append(svg('path', { d: `M${r[0][0]},${H}${path.replace('M', 'L')}L${r[r.length - 1][0]},${H}Z`, class: `area ${line.cls}` }));
      }
    }
    if (d) root.append(svg('path', { d, class: `line ${line.cls}`, 'vector-effect': 'non-scaling-stroke' }));
  }
  return { root, max };
}
