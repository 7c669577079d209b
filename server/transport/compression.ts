/**
 * When responses are compressed. A point query's response is a few hundred
 * bytes to a couple of KiB: gzip saves little on it and cost ~5% of the
 * gateway's CPU per call (the profile in the README's benchmark section), so
 * only responses from 16 KiB up are compressed for clients that accept it
 * (Connect's default is 1 KiB). Large results and streams still are.
 */
export const compressMinBytes = 16 * 1024;
