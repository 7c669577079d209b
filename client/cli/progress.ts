/**
 * The import's progress bar on stderr: how much of the file is read, rows,
 * rows per second and the time left.
 *
 * The bar measures bytes, not rows: the file's size is known before the first
 * row and its row count is not, so bytes read over the file's size is the one
 * honest fraction, and the ETA (cli-progress's, over the last few seconds of
 * updates) follows from it. It is redrawn from a timer rather than per row,
 * so that a million rows cost a few hundred redraws and the ETA's window
 * spans seconds, not microseconds.
 */
import cliProgress from "cli-progress";

export interface ProgressOptions {
  /** Total bytes of the input (the bar's 100 %). */
  readonly totalBytes: number;
  /** Where to draw (stderr, so that stdout stays for the summary). */
  readonly stream: NodeJS.WriteStream;
  /**
   * `"auto"`: draw when `stream` is a terminal. `"always"`: also when it is
   * not, one line per `notTtyIntervalMs` (for logs and tests) instead of
   * redrawing in place. `"never"`: draw nothing.
   */
  readonly show: "auto" | "always" | "never";
  /** How often a line is printed when `stream` is not a terminal (default 1,000 ms). */
  readonly notTtyIntervalMs?: number;
}

export interface Progress {
  /** Records where the import is; cheap enough to call per row. */
  update(bytesRead: number, rows: number): void;
  /** Draws the final state and stops the timer. */
  stop(): void;
}

const updateIntervalMs = 200;

/** A progress display, or one that draws nothing (see {@link ProgressOptions.show}). */
export function createProgress(options: ProgressOptions): Progress {
  const isTty = options.stream.isTTY === true;
  if (options.show === "never" || (options.show === "auto" && !isTty)) {
    return { update() {}, stop() {} };
  }
  const bar = new cliProgress.SingleBar({
    stream: options.stream,
    format:
      "{bar} {percentage}% | {rows} rows | {rate} rows/s | ETA {eta_formatted} | {duration_formatted}",
    barsize: 30,
    hideCursor: false,
    // cli-progress's own SIGINT/SIGTERM handlers would keep the process alive.
    gracefulExit: false,
    noTTYOutput: options.show === "always",
    notTTYSchedule: options.notTtyIntervalMs ?? 1000,
    // The ETA from the last 5 s of updates: steady, yet it follows the rate.
    etaBuffer: 5000 / updateIntervalMs,
    etaAsynchronousUpdate: true,
    fps: 5,
  });
  const startedAt = performance.now();
  let bytes = 0;
  let rows = 0;
  const payload = () => {
    const seconds = (performance.now() - startedAt) / 1000;
    return {
      rows: rows.toLocaleString("en-US"),
      rate: seconds > 0 ? Math.round(rows / seconds).toLocaleString("en-US") : "0",
    };
  };
  bar.start(Math.max(options.totalBytes, 1), 0, payload());
  const timer = setInterval(() => bar.update(bytes, payload()), updateIntervalMs);
  timer.unref();
  return {
    update(bytesRead, rowCount) {
      bytes = bytesRead;
      rows = rowCount;
    },
    stop() {
      clearInterval(timer);
      bar.update(bytes, payload());
      bar.stop();
    },
  };
}
