import { z } from 'zod';

/** The built-in variants, and the spec's word for seeded random initialisation. */
export const BUILT_IN_VARIANTS = ['imagenet', 'imagenet_v2'] as const;
export const RANDOM_WEIGHTS = 'random';

/** A name weights are stored and asked for by: a built-in variant's, or one an operator imported. */
export const VariantName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, 'lower-case letters, digits, ".", "_" or "-", at most 64, starting with a letter or digit')
  .refine((name) => name !== RANDOM_WEIGHTS, `"${RANDOM_WEIGHTS}" means no weights`);
export type VariantName = z.infer<typeof VariantName>;

/** torchvision's evaluation transform for a variant, as `weights.transforms()` gives it: resize the shorter side, center-crop. */
export const VariantTransform = z.object({
  resizeAt224: z.number().int().min(224).max(512).describe('The shorter side before a 224 px center crop (scaled with inputSize)'),
});
export type VariantTransform = z.infer<typeof VariantTransform>;
export const DEFAULT_TRANSFORM: VariantTransform = { resizeAt224: 256 };

/** One variant of a manifest: where its file is and what it must be. */
export const ManifestEntry = z.strictObject({
  url: z.string().url().describe('http(s) URL of a torch.save state_dict (.pth, zip format) or a torchvision-named .safetensors'),
  bytes: z.number().int().positive().optional().describe('The exact size of the file'),
  mebibytes: z
    .number()
    .positive()
    .optional()
    .describe(
      "The size in MiB to three decimals, as torchvision's weight metadata records it (_file_size), when the exact bytes are not known",
    ),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional()
    .describe("The file's whole sha256, where it is known"),
  sha256Prefix: z
    .string()
    .regex(/^[0-9a-f]{8,64}$/)
    .optional()
    .describe("The first hex digits of the file's sha256 (torch.hub's check: the digits in the file name)"),
  transform: VariantTransform.default(DEFAULT_TRANSFORM),
  top1: z.number().min(0).max(100).optional().describe('ImageNet-1K top-1 accuracy in percent, where published'),
});
export type ManifestEntry = z.infer<typeof ManifestEntry>;

/** WEIGHTS_MANIFEST: variants by name; it replaces the built-in one (mirrors, air-gapped sites, tests). */
export const WeightsManifest = z.record(VariantName, ManifestEntry).superRefine((manifest, context) => {
  for (const [name, entry] of Object.entries(manifest)) {
    if (!entry.sha256 && !entry.sha256Prefix)
      context.addIssue({ code: 'custom', path: [name], message: 'a variant needs sha256 or sha256Prefix: a file must be checked' });
    if (!entry.bytes && !entry.mebibytes)
      context.addIssue({ code: 'custom', path: [name], message: 'a variant needs bytes or mebibytes: a file must be checked' });
  }
});
export type WeightsManifest = z.infer<typeof WeightsManifest>;

/** What the store keeps beside a variant's safetensors: where it came from, and the hashes that say it is whole. */
export const WeightsRecord = z.object({
  name: VariantName,
  source: z.string().describe('The URL it was fetched from, or "imported from <file name>"'),
  sourceSha256: z.string().describe('sha256 of the file as fetched or imported'),
  sha256: z.string().describe('sha256 of the stored safetensors'),
  bytes: z.number().int().describe('Size of the stored safetensors'),
  transform: VariantTransform,
  top1: z.number().nullable(),
  storedAt: z.string(),
});
export type WeightsRecord = z.infer<typeof WeightsRecord>;

/** GET /v1/weights: every variant the manifest names or the store holds. */
export const WeightsVariant = z.object({
  name: VariantName,
  present: z.boolean().describe('In the artifact store: a job uses it without fetching'),
  source: z.string().nullable().describe('Where it is (or would be) fetched from, or which file it was imported from'),
  bytes: z.number().int().nullable().describe('Size of the stored safetensors, or of the file to fetch'),
  sha256: z.string().nullable().describe('sha256 of the stored safetensors, or of the file to fetch (or its first digits)'),
  top1: z.number().nullable(),
  transform: VariantTransform,
});
export type WeightsVariant = z.infer<typeof WeightsVariant>;
export const WeightsList = z.object({ items: z.array(WeightsVariant) });

/** Which checkpoint of an earlier job to start from. */
export const CheckpointChoice = z.union([z.enum(['best', 'final']), z.number().int().min(1).max(1000)]);

/** A job's start point: a variant's weights, seeded random ones, or an earlier job's model. */
export const WeightsSpec = z
  .union([
    z.literal(RANDOM_WEIGHTS),
    VariantName,
    z.strictObject({
      job: z.string().uuid().describe('One of your completed jobs'),
      checkpoint: CheckpointChoice.default('best').describe('Its best epoch, its final model, or an epoch N it kept'),
    }),
  ])
  .describe(
    'imagenet (torchvision IMAGENET1K_V1, the default), imagenet_v2 (IMAGENET1K_V2), a name `retrain weights import` stored, ' +
      'random, or {"job": id, "checkpoint": "best" | "final" | N} to start from an earlier job of yours',
  );
export type WeightsSpec = z.infer<typeof WeightsSpec>;

/** Where a job's weights came from: lineage a user can follow back. */
export const WeightsLineage = z.union([
  z.object({ source: z.literal('random'), seed: z.number().int() }),
  z.object({ source: z.literal('variant'), name: VariantName, sha256: z.string(), from: z.string() }),
  z.object({
    source: z.literal('job'),
    job: z.string(),
    checkpoint: z.string().describe('final, or epoch-N'),
    head: z.enum(['kept', 'new']).describe('kept: the classes match, the head continues; new: a new head for these classes'),
  }),
]);
export type WeightsLineage = z.infer<typeof WeightsLineage>;
