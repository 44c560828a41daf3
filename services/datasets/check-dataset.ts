import { InvalidInputError } from '../../common/errors.js';
import { DatasetError, locateDatasetFolder, readImageFolder, type ImageFolder } from '../../common/image-folder.js';
import type { FolderDataset, UploadedDataset } from '../../schemas/dataset.js';

/** The class folders a folder or upload dataset names, or an error naming the field (and never the server's paths). */
export async function checkDataset(dataset: FolderDataset | UploadedDataset, dataDir: string): Promise<ImageFolder> {
  try {
    return await readImageFolder(await locateDatasetFolder(dataset, dataDir));
  } catch (error) {
    if (!(error instanceof DatasetError)) throw error;
    const field = dataset.type === 'upload' ? 'dataset.id' : 'dataset.path';
    throw InvalidInputError.field(field, error.message.replaceAll(dataDir, 'DATA_DIR'));
  }
}
