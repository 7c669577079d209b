/**
 * Writes bench/RESULTS.md and bench/results.svg from the benchmarks' outputs
 * in bench/out/ (each writes its markdown section and a JSON list of headline
 * figures; see Figure in support/harness.ts), with the analysis of what
 * limits the goals not met (bench/limits.md, written by hand from profiles).
 * `npm run bench` runs it last; BENCH_STARTED (seconds since the epoch, set
 * by scripts/bench.sh) gives the suite's duration.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Figure } from "./support/harness.js";
import { chart, format, met } from "./support/results-chart.js";

const benchDir = fileURLToPath(new URL("../../bench/", import.meta.url));
const outDir = path.join(benchDir, "out");

/** The report's benchmarks, in order: their output files' base name. */
const sections = ["point-query", "ingest-write", "ingest-stream", "stream-execute"];

function read(file: string): string | undefined {
  const full = path.join(outDir, file);
  return existsSync(full) ? readFileSync(full, "utf8") : undefined;
}

function main(): void {
  const figures: Figure[] = [];
  const details: string[] = [];
  const missing: string[] = [];
  for (const name of sections) {
    const json = read(`${name}.json`);
    const markdown = read(`${name}.md`);
    if (json === undefined || markdown === undefined) {
      missing.push(name);
      continue;
    }
    figures.push(...(JSON.parse(json) as Figure[]));
    details.push(markdown.replace(/^## /m, "### "));
  }
  // The suite's duration means something only when the whole suite ran.
  const wholeSuite = ["", "all"].includes(process.env.BENCH_ONLY ?? "");
  const started = wholeSuite ? Number(process.env.BENCH_STARTED ?? Number.NaN) : Number.NaN;
  const minutes = Number.isFinite(started) ? (Date.now() / 1000 - started) / 60 : Number.NaN;
  const limitsFile = path.join(benchDir, "limits.md");
  const limits = existsSync(limitsFile) ? readFileSync(limitsFile, "utf8").trim() : "";

  const goalRows = figures.map((f) => {
    const ok = met(f);
    const goal = f.goal === undefined ? "" : `${f.goal.op} ${format(f.goal.value, f.unit)}`;
    return (
      `| ${f.benchmark} | ${f.name} | ${format(f.median, f.unit)} | ` +
      `${format(f.min, f.unit)}-${format(f.max, f.unit)} | ${goal} | ` +
      `${ok === undefined ? "" : ok ? "met" : "**not met**"} |`
    );
  });
  const lines = [
    "# Benchmark results",
    "",
    `Written by \`npm run bench\` on ${new Date().toISOString()}` +
      (Number.isFinite(minutes)
        ? `, which took ${minutes.toFixed(1)} minutes`
        : ` (BENCH_ONLY=${process.env.BENCH_ONLY}: the other sections are from earlier runs)`) +
      `: Node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ` +
      `load average ${os.loadavg()[0]?.toFixed(2)} at the end. Every figure is the median ` +
      "of at least 3 runs, each gateway run paired with a direct mysql2 run of the same " +
      "work on the same private MariaDB, the paths alternating; the range is the lowest " +
      "to the highest run. The machine is shared by the load generator, the gateway and " +
      "MariaDB (and, when busy, other work): compare ratios, not absolute figures.",
    "",
    ...(missing.length > 0 ? [`Missing (not run or failed): ${missing.join(", ")}.`, ""] : []),
    "![Benchmark results: ratios to direct mysql2, latency, rates and memory](results.svg)",
    "",
    "## Goals",
    "",
    "| benchmark | figure | median | range | goal | |",
    "|---|---|---:|---:|---|---|",
    ...goalRows,
    "",
    ...(limits === "" ? [] : [limits, ""]),
    "## Details",
    "",
    ...details,
  ];
  writeFileSync(path.join(benchDir, "RESULTS.md"), `${lines.join("\n").trimEnd()}\n`);
  writeFileSync(path.join(benchDir, "results.svg"), chart(figures));
  process.stderr.write(`bench: written ${path.join(benchDir, "RESULTS.md")} and results.svg\n`);
}

main();
