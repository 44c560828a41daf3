import { readdir, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar';
import { callJson, one, parseCommand, print, progressLine } from './client.js';
import { UsageError } from './usage.js';

export const DATASETS_USAGE = `retrain datasets upload FOLDER|ARCHIVE [--name NAME]   upload class folders (a folder, .tar.gz or .zip); prints the dataset and its preflight
       retrain datasets list                                 your uploaded datasets
       retrain datasets get ID                               one, with its preflight report
       retrain datasets delete ID                            delete one (not while a job uses it)
   every command: [--url URL] [--key KEY]`;

/** Counts bytes as they go by, for the progress bar. */
async function* counted(chunks: AsyncIterable<Buffer>, total: number | null): AsyncGenerator<Buffer> {
  let sent = 0;
  let shownAt = 0;
  const show = () => {
    shownAt = Date.now();
    const of = total ? ` of ${(total / 1024 ** 2).toFixed(1)}` : '';
    progressLine(`uploaded ${(sent / 1024 ** 2).toFixed(1)} MiB${of}`, total ? sent / total : null);
  };
  for await (const chunk of chunks) {
    sent += chunk.length;
    if (Date.now() - shownAt >= 1000) show();
    yield chunk;
  }
  show();
  if (process.stderr.isTTY) process.stderr.write('\n');
}

export async function datasets(argv: string[]): Promise<void> {
  const { service, values, positionals } = parseCommand(argv, { name: { type: 'string' } });
  const [action, ...rest] = positionals;
  switch (action) {
    case 'upload': {
      const source = one(rest, 'a folder of class folders, or a .tar.gz or .zip of one');
      const info = await stat(source);
      const zip = source.endsWith('.zip');
      // A folder is packed as it is sent: class folders at the top of a tar.gz.
      const classes = info.isDirectory()
        ? (await readdir(source, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name)
        : [];
      const body = info.isDirectory() ? tar.c({ gzip: true, cwd: source, portable: true }, classes) : createReadStream(source);
      const name = String(values.name ?? path.basename(path.resolve(source)).replace(/\.(tar\.gz|tgz|zip)$/, ''));
      const record = await callJson(service, `/v1/datasets?name=${encodeURIComponent(name)}`, {
        method: 'POST',
        headers: { 'content-type': zip ? 'application/zip' : 'application/gzip' },
        body: Readable.toWeb(
          Readable.from(counted(body as AsyncIterable<Buffer>, info.isDirectory() ? null : info.size)),
        ) as ReadableStream,
        duplex: 'half',
      } as RequestInit);
      return print(record);
    }
    case 'list':
      return print(await callJson(service, '/v1/datasets'));
    case 'get':
      return print(await callJson(service, `/v1/datasets/${one(rest, 'a dataset id')}`));
    case 'delete':
      await callJson(service, `/v1/datasets/${one(rest, 'a dataset id')}`, { method: 'DELETE' }).catch((error: Error) => {
        if (!(error instanceof SyntaxError)) throw error; // 204: no body
      });
      return;
    default:
      throw new UsageError(action ? `unknown datasets action ${action}` : 'datasets needs an action');
  }
}
