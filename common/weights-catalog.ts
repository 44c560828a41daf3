import { DEFAULT_TRANSFORM, type ManifestEntry, type WeightsManifest, type WeightsVariant } from '../schemas/weights.js';
import type { WeightsStore } from './weights-store.js';

/** Every variant a job may name: the manifest's (fetched on first use) and those in the store (fetched or imported). */
export class WeightsCatalog {
  constructor(
    private readonly weights: WeightsStore,
    private readonly manifest: WeightsManifest,
  ) {}

  async list(): Promise<WeightsVariant[]> {
    const stored = new Map((await this.weights.records()).map((record) => [record.name, record]));
    const names = [...new Set([...Object.keys(this.manifest), ...stored.keys()])].sort();
    return names.map((name) => {
      const record = stored.get(name);
      const entry = this.manifest[name] as ManifestEntry | undefined;
      return {
        name,
        present: Boolean(record),
        source: record?.source ?? entry?.url ?? null,
        bytes: record?.bytes ?? entry?.bytes ?? (entry?.mebibytes ? Math.round(entry.mebibytes * 1024 ** 2) : null),
        sha256: record?.sha256 ?? entry?.sha256 ?? entry?.sha256Prefix ?? null,
        top1: record?.top1 ?? entry?.top1 ?? null,
        transform: record?.transform ?? entry?.transform ?? DEFAULT_TRANSFORM,
      };
    });
  }

  async has(name: string): Promise<boolean> {
    return name in this.manifest || (await this.weights.record(name)) !== null;
  }

  /** Names a job may use, for an answer that lists them. */
  async names(): Promise<string[]> {
    return (await this.list()).map((variant) => variant.name);
  }
}
