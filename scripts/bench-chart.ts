/**
 * The benchmark's latency chart: cumulative distributions (CDF) of time to contain and of the
 * ingress acknowledgement, one line per measured series, as a small self-contained SVG.
 */

export interface ChartSeries {
  label: string;
  color: string;
  /** Milliseconds, any order. */
  values: number[];
  dashed?: boolean;
}

const W = 720;
const H = 360;
const M = { left: 64, right: 16, top: 40, bottom: 64 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Log-scaled x axis (latencies span sub-millisecond acks to multi-second containment). */
export function cdfSvg(title: string, series: ChartSeries[]): string {
  const all = series.flatMap((s) => s.values).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.1, Math.min(...all)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (ms: number) =>
    M.left + ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * pw;
  const y = (p: number) => M.top + (1 - p) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`,
  );
  // Grid: decades on x, quartiles on y.
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    const label = d >= 1000 ? `${d / 1000}s` : `${d}ms`;
    out.push(
      `<line x1="${x(d).toFixed(1)}" y1="${M.top}" x2="${x(d).toFixed(1)}" y2="${M.top + ph}" stroke="#ddd"/>`,
    );
    out.push(`<text x="${x(d).toFixed(1)}" y="${M.top + ph + 14}" text-anchor="middle">${label}</text>`);
  }
  for (const p of [0, 0.25, 0.5, 0.75, 0.95, 1]) {
    out.push(
      `<line x1="${M.left}" y1="${y(p).toFixed(1)}" x2="${M.left + pw}" y2="${y(p).toFixed(1)}" stroke="${p === 0.5 || p === 0.95 ? '#bbb' : '#eee'}"/>`,
    );
    out.push(
      `<text x="${M.left - 6}" y="${(y(p) + 4).toFixed(1)}" text-anchor="end">${Math.round(p * 100)}%</text>`,
    );
  }
  out.push(`<text x="${M.left + pw / 2}" y="${H - 36}" text-anchor="middle">latency (log scale)</text>`);
  out.push(
    `<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">share of detections at or below</text>`,
  );
  series.forEach((s, i) => {
    const v = [...s.values].sort((a, b) => a - b);
    if (!v.length) return;
    // At most ~300 points per line keeps the file small.
    const step = Math.max(1, Math.floor(v.length / 300));
    const pts: string[] = [];
    for (let k = 0; k < v.length; k += step)
      pts.push(`${x(v[k]!).toFixed(1)},${y((k + 1) / v.length).toFixed(1)}`);
    pts.push(`${x(v[v.length - 1]!).toFixed(1)},${y(1).toFixed(1)}`);
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${pts.join(' ')}"/>`,
    );
    const row = Math.floor(i / 2);
    const lx = M.left + (i % 2) * (pw / 2);
    const ly = H - 8 - row * 14;
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 18}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
    );
    out.push(`<text x="${lx + 24}" y="${ly}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
