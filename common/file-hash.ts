import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Streams a file into a hash (sha256 unless one is passed to continue), without reading it whole. */
export async function hashFile(file: string, hash: Hash = createHash('sha256')): Promise<Hash> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash;
}
