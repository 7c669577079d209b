/**
 * The SVG chart of bench/RESULTS.md: one panel per unit (ratios to direct,
 * milliseconds, rows/s, MB), a horizontal bar per headline figure at its
 * median, a whisker from the lowest to the highest run, and the goal as a red
 * tick; green bars met their goal, orange ones did not.
 */
import type { Figure } from "./harness.js";

export function format(value: number, unit: string): string {
  if (!Number.isFinite(value)) return "-";
  if (unit === "x" || unit === "ms") return value.toFixed(3);
  if (unit === "MB") return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}

/** Whether a figure met its goal; undefined when it has none. */
export function met(figure: Figure): boolean | undefined {
  const goal = figure.goal;
  if (goal === undefined) return undefined;
  return goal.op === ">=" ? figure.median >= goal.value : figure.median < goal.value;
}

const unitTitles: Record<string, string> = {
  x: "Throughput through the gateway, as a ratio to direct mysql2 in the same run",
  ms: "Point query at 1 caller: p50 latency the gateway adds (ms)",
  "rows/s": "Single-row Write from 1,000 callers (rows/s)",
  MB: "StreamExecute: gateway's highest RSS (MB)",
};

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function chart(figures: readonly Figure[]): string {
  const width = 960;
  const labelWidth = 470;
  const barArea = width - labelWidth - 90;
  const rowHeight = 22;
  const parts: string[] = [];
  let y = 10;
  const units = [...new Set(figures.map((f) => f.unit))];
  for (const unit of units) {
    const list = figures.filter((f) => f.unit === unit);
    const top = Math.max(...list.flatMap((f) => [f.max, f.median, f.goal?.value ?? 0])) * 1.1;
    const scale = (v: number) => (Math.max(0, v) / top) * barArea;
    parts.push(
      `<text x="10" y="${y + 16}" font-weight="bold">${escapeXml(unitTitles[unit] ?? unit)}</text>`,
    );
    y += 26;
    for (const f of list) {
      const ok = met(f);
      const color = ok === undefined ? "#8aa0b8" : ok ? "#3c9a5f" : "#d08b2c";
      const full = `${f.benchmark}: ${f.name.replace(/: [^:]*$/, "")}`;
      const label = full.length > 66 ? `${full.slice(0, 65)}…` : full;
      parts.push(
        `<text x="10" y="${y + 15}" font-size="12">${escapeXml(label)}</text>`,
        `<rect x="${labelWidth}" y="${y + 4}" width="${scale(f.median).toFixed(1)}" height="14" fill="${color}"/>`,
        `<line x1="${(labelWidth + scale(f.min)).toFixed(1)}" x2="${(labelWidth + scale(f.max)).toFixed(1)}" y1="${y + 11}" y2="${y + 11}" stroke="#333" stroke-width="1"/>`,
        // The value right of the bar, its whisker and its goal tick.
        `<text x="${(labelWidth + scale(Math.max(f.median, f.max, f.goal?.value ?? 0)) + 6).toFixed(1)}" y="${y + 15}" font-size="12">${format(f.median, unit)}</text>`,
      );
      if (f.goal !== undefined) {
        const gx = (labelWidth + scale(f.goal.value)).toFixed(1);
        parts.push(
          `<line x1="${gx}" x2="${gx}" y1="${y + 1}" y2="${y + 21}" stroke="#c0392b" stroke-width="2"/>`,
        );
      }
      y += rowHeight;
    }
    y += 12;
  }
  parts.push(
    `<text x="10" y="${y + 12}" font-size="11" fill="#555">Bars: median of the runs; whisker: lowest to highest run; red tick: the goal (green bar: met, orange: not met).</text>`,
  );
  y += 22;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="title" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif" font-size="13">\n` +
    `<title id="title">sqlgate benchmark results against direct mysql2</title>\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`
  );
}
