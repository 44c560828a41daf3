import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { checkedKey, type ArtifactData, type ArtifactStore } from './artifact-store.js';

/** Memory one upload may hold: PART_BYTES per part in flight, PARTS_IN_FLIGHT of them. */
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;

const isMissing = (error: unknown) => error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404;

/**
 * Artifacts as objects in an S3-compatible store, under `s3://bucket/prefix`. An object appears whole
 * when its upload completes (multipart included), which is the atomic write the interface promises.
 */
export class S3ArtifactStore implements ArtifactStore {
  readonly shared = true;
  private readonly base: string;

  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    prefix: string,
  ) {
    this.base = prefix.replace(/^\/+|\/+$/g, '');
  }

  static fromUrl(url: string, { endpoint, region }: { endpoint?: string; region: string }): S3ArtifactStore {
    const { hostname: bucket, pathname } = new URL(url);
    const client = new S3Client({
      region,
      endpoint,
      // S3-compatible servers (MinIO, Ceph, s3rver) answer path-style requests; AWS itself takes either.
      forcePathStyle: endpoint !== undefined,
      // Only the checksums an operation requires: servers other than AWS refuse the SDK's default CRC32 trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    return new S3ArtifactStore(client, bucket, pathname);
  }

  private objectKey(key: string): string {
    checkedKey(key);
    return this.base ? `${this.base}/${key}` : key;
  }

  async write(key: string, data: ArtifactData): Promise<void> {
    const body = typeof data === 'string' || data instanceof Uint8Array ? data : Readable.from(data);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: body },
      partSize: PART_BYTES,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
    });
    await upload.done();
  }

  async read(key: string): Promise<Buffer> {
    const object = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    if (!object.Body) throw new Error(`artifact ${key} has no body`);
    return Buffer.from(await object.Body.transformToByteArray());
  }

  async stat(key: string) {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async open(key: string): Promise<Readable> {
    const object = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    if (!(object.Body instanceof Readable)) throw new Error(`artifact ${key} did not arrive as a stream`);
    return object.Body;
  }

  /** Every page of a listing under `prefix/`. */
  private async *pages(prefix: string, delimiter?: string): AsyncGenerator<ListObjectsV2CommandOutput> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: `${this.objectKey(prefix)}/`,
          Delimiter: delimiter,
          ContinuationToken: token,
        }),
      );
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async list(prefix: string): Promise<string[]> {
    const start = this.objectKey(prefix).length + 1;
    const names = new Set<string>();
    for await (const page of this.pages(prefix, '/')) {
      for (const folder of page.CommonPrefixes ?? []) if (folder.Prefix) names.add(folder.Prefix.slice(start, -1));
      for (const object of page.Contents ?? []) if (object.Key) names.add(object.Key.slice(start));
    }
    return [...names].filter(Boolean).sort();
  }

  async usage(prefix: string): Promise<number> {
    let bytes = (await this.stat(prefix))?.size ?? 0;
    for await (const page of this.pages(prefix)) for (const object of page.Contents ?? []) bytes += object.Size ?? 0;
    return bytes;
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  async remove(prefix: string): Promise<void> {
    const keys = [this.objectKey(prefix)];
    for await (const page of this.pages(prefix)) for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    // One DeleteObject per key: DeleteObjects needs Content-MD5 on many S3-compatible servers, which current SDKs no longer send.
    for (const key of keys) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }
}
