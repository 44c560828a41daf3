import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Streams chunks into a hash (sha256 unless one is passed to continue), never holding them whole. */
export async function hashStream(chunks: AsyncIterable<Uint8Array>, hash: Hash = createHash('sha256')): Promise<Hash> {
  for await (const chunk of chunks) hash.update(chunk);
  return hash;
}

/** Streams a file into a hash (sha256 unless one is passed to continue), without reading it whole. */
export function hashFile(file: string, hash: Hash = createHash('sha256')): Promise<Hash> {
  return hashStream(createReadStream(file), hash);
}
