/**
 * A self-signed certificate for 127.0.0.1, made with openssl (installed by
 * scripts/ensure-test-tools.sh) in a temporary directory removed after the test.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCertificate {
  readonly key: Buffer;
  readonly cert: Buffer;
  /** The certificate's file, for clients that take a path. */
  readonly certFile: string;
}

export async function selfSignedCertificate(t: {
  after(fn: () => unknown): void;
}): Promise<TestCertificate> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-tls-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-keyout",
    key,
    "-out",
    cert,
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  return { key: readFileSync(key), cert: readFileSync(cert), certFile: cert };
}
