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

export interface TestAuthority {
  /** The CA's certificate (PEM), to trust or to require. */
  readonly cert: Buffer;
  /** A client certificate with common name `cn`, signed by this CA. */
  issue(cn: string): Promise<{ cert: Buffer; key: Buffer }>;
}

/** A throwaway certificate authority (openssl), in a directory removed after the test. */
export async function certificateAuthority(t: {
  after(fn: () => unknown): void;
}): Promise<TestAuthority> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-ca-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const caKey = path.join(dir, "ca.key");
  const caCert = path.join(dir, "ca.pem");
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-days",
    "1",
    "-keyout",
    caKey,
    "-out",
    caCert,
    "-subj",
    "/CN=sqlgate test CA",
  ]);
  let serial = 0;
  return {
    cert: readFileSync(caCert),
    async issue(cn) {
      serial++;
      const key = path.join(dir, `client-${serial}.key`);
      const csr = path.join(dir, `client-${serial}.csr`);
      const cert = path.join(dir, `client-${serial}.pem`);
      await run("openssl", ["req", ...ec, "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`]);
      await run("openssl", [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        caCert,
        "-CAkey",
        caKey,
        "-set_serial",
        String(serial),
        "-days",
        "1",
        "-out",
        cert,
      ]);
      return { cert: readFileSync(cert), key: readFileSync(key) };
    },
  };
}
