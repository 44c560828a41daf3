import type { ArtifactStore } from '../../common/artifact-store.js';
import { InvalidInputError } from '../../common/errors.js';
import { fetchUpload } from '../../common/shared-uploads.js';
import { DatasetError, locateDatasetFolder, readImageFolder, type ImageFolder } from '../../common/image-folder.js';
import type { Caller } from '../../schemas/auth.js';
import type { FolderDataset, UploadedDataset } from '../../schemas/dataset.js';
import { readUploadRecord } from './dataset-store.js';

/**
 * The class folders a folder or upload dataset names, or an error naming the field (and never the
 * server's paths). An upload must be the caller's.
 */
export async function checkDataset(
  dataset: FolderDataset | UploadedDataset,
  { dataDir, store }: { dataDir: string; store: ArtifactStore },
  caller: Caller,
): Promise<ImageFolder> {
  const field = dataset.type === 'upload' ? 'dataset.id' : 'dataset.path';
  if (dataset.type === 'upload') {
    if (!(await readUploadRecord(store, caller, dataset.id))) throw InvalidInputError.field(field, `no uploaded dataset ${dataset.id}`);
    // Received by another API process on another host: its files come from the shared store.
    if (store.shared) await fetchUpload(store, dataDir, dataset.id);
  }
  try {
    return await readImageFolder(await locateDatasetFolder(dataset, dataDir));
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    throw InvalidInputError.field(field, error.message.replaceAll(dataDir, 'DATA_DIR'));
  }
}
