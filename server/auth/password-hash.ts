/**
 * Passwords at rest: scrypt (Node's, from OpenSSL) with a random salt, in a
 * PHC-style string that names its parameters, so they can be raised later
 * without breaking stored hashes:
 *
 *   $scrypt$ln=15,r=8,p=1$<salt, base64>$<hash, base64>
 *
 * Verification compares in constant time.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/** log2 of scrypt's cost N: 2^15 with r=8 takes 32 MiB and tens of milliseconds. */
const defaultLogN = 15;
const blockSize = 8;
const parallelism = 1;
const keyLength = 32;

function derive(
  password: string,
  salt: Buffer,
  logN: number,
  r: number,
  p: number,
  length: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const N = 2 ** logN;
    scrypt(password, salt, length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await derive(password, salt, defaultLogN, blockSize, parallelism, keyLength);
  return `$scrypt$ln=${defaultLogN},r=${blockSize},p=${parallelism}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

const format =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

/** Whether `encoded` is a hash this module can verify. */
export function isPasswordHash(encoded: string): boolean {
  return format.test(encoded);
}

/** Whether `password` matches `encoded` (a hashPassword result). */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const match = format.exec(encoded);
  if (!match) return false;
  const [, logN, r, p, salt, hash] = match;
  const expected = Buffer.from(hash ?? "", "base64");
  const actual = await derive(
    password,
    Buffer.from(salt ?? "", "base64"),
    Number(logN),
    Number(r),
    Number(p),
    expected.byteLength,
  );
  return timingSafeEqual(actual, expected);
}
