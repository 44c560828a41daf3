import type { DatasetSpec } from '../../schemas/dataset.js';
import { resolveDataset } from '../../workers/data/datasets.js';
import { DatasetError, type ImageFolder } from '../../workers/data/image-folder.js';
import { HttpProblem } from '../api/problem.js';

/** The dataset a spec names, or a 400 problem naming the field (and never the server's paths). */
export async function resolveDatasetOrProblem(dataset: DatasetSpec, dataDir: string): Promise<ImageFolder> {
  try {
    return await resolveDataset(dataset, dataDir);
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    const field = dataset.type === 'upload' ? 'dataset.id' : dataset.type === 'folder' ? 'dataset.path' : 'dataset';
    const message = error.message.replaceAll(dataDir, 'DATA_DIR');
    throw new HttpProblem(400, 'Invalid request', `${field}: ${message}`, { in: 'body', errors: [{ path: field, message }] });
  }
}
