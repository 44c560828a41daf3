import { evictStoreCache, type CachePolicy } from '../../common/cache-eviction.js';
import { readJson, type ArtifactStore } from '../../common/artifact-store.js';
import type { InspectionCache } from '../../engine/data/preflight.js';
import { InspectedFiles } from '../../schemas/dataset.js';

const PREFLIGHT_CACHE = 'preflight-cache';

/**
 * The preflight's inspection of every file, kept in the artifact store by the data set's digest (and the
 * preflight's rules): the next job
 * on the same files (a sweep's every trial) decodes none of them. Evicted as the CNN codes are.
 */
export function storeInspectionCache(store: ArtifactStore, policy: CachePolicy): InspectionCache {
  const entry = (key: string) => `${PREFLIGHT_CACHE}/${key}.json`;
  return {
    // An entry that does not parse is a miss: the files are inspected again and it is written over.
    read: (key) => readJson(store, entry(key), InspectedFiles).catch(() => null),
    write: async (key, inspected) => {
      await store.write(entry(key), JSON.stringify(inspected));
      await evictStoreCache(store, PREFLIGHT_CACHE, policy);
    },
  };
}
