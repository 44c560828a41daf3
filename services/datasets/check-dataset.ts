import type { ArtifactStore } from '../../common/artifact-store.js';
import { InvalidInputError } from '../../common/errors.js';
import { DatasetError, locateDatasetFolder, readImageFolder } from '../../common/image-folder.js';
import type { Caller } from '../../schemas/auth.js';
import type { DatasetRecord, FolderDataset, UploadedDataset } from '../../schemas/dataset.js';
import { readUploadRecord } from './dataset-store.js';

/** What a job needs to know of its dataset before it is queued: its classes, and for an upload its record. */
export interface CheckedDataset {
  classNames: string[];
  /** An upload's record (its classes and its preflight report, made when it was received). */
  record: DatasetRecord | null;
}

/**
 * The classes a folder or upload dataset names, or an error naming the field (and never the server's
 * paths). An upload must be the caller's; its record says its classes, so no API host fetches its files.
 */
export async function checkDataset(
  dataset: FolderDataset | UploadedDataset,
  { dataDir, store }: { dataDir: string; store: ArtifactStore },
  caller: Caller,
): Promise<CheckedDataset> {
  if (dataset.type === 'upload') {
    const record = await readUploadRecord(store, caller, dataset.id);
    if (!record) throw InvalidInputError.field('dataset.id', `no uploaded dataset ${dataset.id}`);
    return { classNames: record.classNames, record };
  }
  try {
    return { classNames: (await readImageFolder(await locateDatasetFolder(dataset, dataDir))).classNames, record: null };
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    throw InvalidInputError.field('dataset.path', error.message.replaceAll(dataDir, 'DATA_DIR'));
  }
}
