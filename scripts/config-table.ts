/**
 * Prints the README's configuration table from server/config.ts, the one
 * source of truth (a test checks that the README lists every setting):
 *   npx tsx scripts/config-table.ts
 */
import { settings } from "../server/config.js";

const cell = (text: string) => (text.startsWith("(") ? text : `\`${text}\``);
process.stdout.write("| setting | default | meaning |\n|---|---|---|\n");
for (const s of settings) {
  process.stdout.write(`| \`${s.name}\` | ${cell(s.defaultValue)} | ${s.description} |\n`);
}
