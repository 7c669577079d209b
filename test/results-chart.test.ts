/**
 * The benchmark report's chart: a bar per figure at its median, colored by
 * whether it met its goal, with the goal's tick where the goal is.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Figure } from "../bench/support/harness.js";
import { chart, met } from "../bench/support/results-chart.js";

const figures: Figure[] = [
  {
    benchmark: "Point query",
    name: "h2c, 64 callers: q/s ratio",
    unit: "x",
    median: 0.25,
    min: 0.2,
    max: 0.3,
    goal: { op: ">=", value: 0.5 },
  },
  {
    benchmark: "Write",
    name: "h2load: ratio",
    unit: "x",
    median: 1.3,
    min: 1.25,
    max: 1.4,
    goal: { op: ">=", value: 1.2 },
  },
  {
    benchmark: "StreamExecute",
    name: "RSS",
    unit: "MB",
    median: 120,
    min: 120,
    max: 120,
    goal: { op: "<", value: 150 },
  },
  { benchmark: "Point query", name: "JSON: ratio", unit: "x", median: 0.2, min: 0.2, max: 0.2 },
];

test("goals are met by the median, each way round", () => {
  assert.deepEqual(figures.map(met), [false, true, true, undefined]);
});

test("the chart draws each figure at its median and each goal at its value", () => {
  const svg = chart(figures);
  assert.match(svg, /^<svg [^>]*viewBox/);
  // Two panels (ratios, MB); four bars: orange (not met), green twice, grey (no goal).
  assert.equal((svg.match(/font-weight="bold"/g) ?? []).length, 2);
  const fills = [
    ...svg.matchAll(/<rect x="\d+" y="[\d.]+" width="[\d.]+" height="14" fill="(#[0-9a-f]+)"/g),
  ].map((m) => m[1]);
  assert.deepEqual(fills, ["#d08b2c", "#3c9a5f", "#8aa0b8", "#3c9a5f"]);
  // Bar widths scale with the median within a panel: 0.25 vs 1.3 vs 0.2.
  const widths = [...svg.matchAll(/height="14" fill="#[0-9a-f]+"/g)].map((m) => {
    const before = svg.slice(0, m.index);
    return Number(/width="([\d.]+)"[^<]*$/.exec(before)?.[1]);
  });
  assert.ok(Math.abs((widths[0] ?? 0) / (widths[1] ?? 1) - 0.25 / 1.3) < 0.01, String(widths));
  // One red goal tick per figure with a goal.
  assert.equal((svg.match(/stroke="#c0392b"/g) ?? []).length, 3);
  assert.match(svg, />0\.250</);
  assert.match(svg, />120\.0</);
});
