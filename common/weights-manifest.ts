import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { WeightsManifest } from '../schemas/weights.js';

/**
 * torchvision's ResNet-50 weights (torchvision/models/resnet.py, ResNet50_Weights): the files
 * `resnet50(pretrained=True)` and `weights=IMAGENET1K_V2` load, checked as torch.hub checks them (the
 * sha256 digits in the file name) and by the size torchvision's metadata records for them (_file_size,
 * MiB to three decimals). Mirrors and air-gapped sites replace this with WEIGHTS_MANIFEST.
 */
export const BUILT_IN_MANIFEST: WeightsManifest = {
  imagenet: {
    url: 'https://download.pytorch.org/models/resnet50-0676ba61.pth',
    mebibytes: 97.781,
    sha256Prefix: '0676ba61',
    transform: { resizeAt224: 256 },
    top1: 76.13,
  },
  imagenet_v2: {
    url: 'https://download.pytorch.org/models/resnet50-11ad3fa6.pth',
    mebibytes: 97.79,
    sha256Prefix: '11ad3fa6',
    transform: { resizeAt224: 232 },
    top1: 80.858,
  },
};

/** WEIGHTS_MANIFEST's file when it is set, else the built-in manifest; a file that does not parse is named with its faults. */
export async function loadManifest(file: string | undefined): Promise<WeightsManifest> {
  if (!file) return BUILT_IN_MANIFEST;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`WEIGHTS_MANIFEST ${file} cannot be read as JSON: ${(error as Error).message}`, { cause: error });
  }
  const parsed = WeightsManifest.safeParse(json);
  if (!parsed.success) throw new Error(`WEIGHTS_MANIFEST ${file} is not a weights manifest:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
