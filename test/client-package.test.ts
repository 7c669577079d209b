/**
 * The SDK as a package: `npm run build`'s output (tsconfig.build.json, here
 * into a temporary directory) is what the root package.json's `exports`
 * name, and a scratch TypeScript project that depends on the package
 * type-checks `import ... from "sqlgate/client"` and "sqlgate/client/fetch"
 * (strict, NodeNext), then runs, compiled, against a real gateway.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startGateway } from "./support/gateway.js";
import { createTestDatabase } from "./support/mysql.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = path.join(root, "node_modules/typescript/bin/tsc");

const consumer = `
import { createClient, DatabaseError, type ExecuteResult, type SqlgateClient } from "sqlgate/client";
import { createClient as createFetchClient } from "sqlgate/client/fetch";

const url = process.argv[2] ?? "";
const node: SqlgateClient = createClient({ url, httpVersion: "1.1", int64: "string" });
const web: SqlgateClient = createFetchClient({ url, format: "json" });
// @ts-expect-error: the url is required (the types are real, not any).
createFetchClient({});

const counted: ExecuteResult<{ n: string }> = await node.execute<{ n: string }>("SELECT COUNT(*) AS n");
const rows = await web.execute<[bigint]>("SELECT ? AS big", [2n ** 63n - 1n], { as: "array" });
const big: bigint = rows.rows[0]?.[0] ?? 0n;
let code = "";
try {
  await web.execute("SELEC 1");
} catch (err) {
  if (err instanceof DatabaseError) code = err.code;
}
await node.close();
await web.close();
console.log(JSON.stringify({ n: counted.rows[0]?.n, big: String(big), code }));
`;

test("sqlgate/client and sqlgate/client/fetch type-check and run from a scratch project", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-package-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // The package: package.json, the build's output, and the dependencies.
  const pkg = path.join(dir, "sqlgate");
  mkdirSync(pkg);
  cpSync(path.join(root, "package.json"), path.join(pkg, "package.json"));
  symlinkSync(path.join(root, "node_modules"), path.join(pkg, "node_modules"));
  await run(
    process.execPath,
    [tsc, "-p", path.join(root, "tsconfig.build.json"), "--outDir", path.join(pkg, "dist")],
    {
      cwd: root,
    },
  ).catch((err: { stdout?: string }) => {
    // Errors in files this test does not use must not hide what it checks;
    // the entries' own files must be there.
    t.diagnostic(`tsc -p tsconfig.build.json reported:\n${err.stdout ?? String(err)}`);
  });
  for (const file of ["index.js", "index.d.ts", "fetch.js", "fetch.d.ts"]) {
    assert.ok(existsSync(path.join(pkg, "dist/client/src", file)), `the build wrote ${file}`);
  }

  // The scratch project depends on it.
  const app = path.join(dir, "app");
  mkdirSync(path.join(app, "node_modules"), { recursive: true });
  symlinkSync(pkg, path.join(app, "node_modules/sqlgate"));
  writeFileSync(path.join(app, "package.json"), JSON.stringify({ type: "module", private: true }));
  writeFileSync(path.join(app, "main.ts"), consumer);
  writeFileSync(
    path.join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true,
        lib: ["ES2023", "DOM"],
        types: ["node"],
        typeRoots: [path.join(root, "node_modules/@types")],
        outDir: "out",
      },
      files: ["main.ts"],
    }),
  );
  await run(process.execPath, [tsc, "-p", app], { cwd: app }).catch((err: { stdout?: string }) => {
    assert.fail(`the scratch project does not type-check:\n${err.stdout ?? String(err)}`);
  });

  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const { stdout } = await run(process.execPath, [path.join(app, "out/main.js"), gateway.baseUrl], {
    cwd: app,
  });
  assert.deepEqual(JSON.parse(stdout), {
    n: "1",
    big: "9223372036854775807",
    code: "invalid_argument",
  });
});
