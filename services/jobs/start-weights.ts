import type { ArtifactStore } from '../../common/artifact-store.js';
import { InvalidInputError, NotFoundError } from '../../common/errors.js';
import { JobArtifacts, type CheckpointSelector } from '../../common/job-artifacts.js';
import type { WeightsCatalog } from '../../common/weights-catalog.js';
import type { JobSpec } from '../../schemas/job-spec.js';
import { RANDOM_WEIGHTS } from '../../schemas/weights.js';

/**
 * A variant must be one the catalog knows (400 naming the known ones); an earlier job must be the
 * caller's (404 otherwise, as everywhere), completed (409: `requireCompleted` says so), and keep the
 * checkpoint named (400).
 */
export async function checkStartWeights(
  weights: JobSpec['weights'],
  catalog: WeightsCatalog,
  store: ArtifactStore,
  requireCompleted: (jobId: string) => Promise<unknown>,
): Promise<void> {
  if (weights === RANDOM_WEIGHTS) return;
  if (typeof weights === 'string') {
    if (!(await catalog.has(weights)))
      throw InvalidInputError.field('weights', `no weights named "${weights}"; known: random, ${(await catalog.names()).join(', ')}`);
    return;
  }
  await requireCompleted(weights.job);
  const selector: CheckpointSelector =
    typeof weights.checkpoint === 'number' ? { kind: 'epoch', epoch: weights.checkpoint } : { kind: weights.checkpoint };
  await new JobArtifacts(store, weights.job).savedModel(selector).catch((error: Error) => {
    throw error instanceof NotFoundError ? InvalidInputError.field('weights.checkpoint', error.message) : error;
  });
}
