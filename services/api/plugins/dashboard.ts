import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { FastifyInstance } from 'fastify';

const DASHBOARD = new URL('../../../dashboard/', import.meta.url);
// The page's own script and styles only; images are the API's or blobs; uPlot sets inline styles.
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

interface Asset {
  body: Uint8Array;
  type: string;
  etag: string;
}

const asset = (body: Uint8Array, type: string): Asset => ({
  body,
  type,
  etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`,
});

/** The dashboard's files: its TypeScript bundled (with uPlot) by esbuild once per process, in memory. */
let assets: Promise<Map<string, Asset>> | undefined;
async function buildAssets(): Promise<Map<string, Asset>> {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('src/main.ts', DASHBOARD))],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const uplotCss = createRequire(import.meta.url).resolve('uplot/dist/uPlot.min.css');
  return new Map([
    ['/', asset(await readFile(new URL('index.html', DASHBOARD)), 'text/html; charset=utf-8')],
    ['/dashboard/app.js', asset(bundle.outputFiles[0].contents, 'text/javascript; charset=utf-8')],
    ['/dashboard/style.css', asset(await readFile(new URL('style.css', DASHBOARD)), 'text/css; charset=utf-8')],
    ['/dashboard/uplot.css', asset(await readFile(uplotCss), 'text/css; charset=utf-8')],
  ]);
}

/**
 * The dashboard at `/`: a static page that uses the API as any client does (with the caller's key when
 * keys are on), so it needs no access of its own. Left out of the OpenAPI document.
 */
export async function registerDashboard(app: FastifyInstance): Promise<void> {
  assets ??= buildAssets();
  for (const [path, { body, type, etag }] of await assets) {
    app.get(path, { schema: { hide: true } }, async (request, reply) => {
      reply.header('etag', etag).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff');
      if (path === '/') reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
      if (request.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.type(type).send(Buffer.from(body));
    });
  }
}
