import { z } from 'zod';

/** A model alias's name: what a client serves predictions under (`/v1/models/<name>/predict`). */
export const AliasName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._-]*$/, 'lower-case letters, digits, ".", "_" or "-", starting with a letter or digit');

export const AliasTarget = z.strictObject({
  job: z.uuid().describe('A completed (or stopped_early) job of yours'),
  checkpoint: z
    .union([z.enum(['final', 'best']), z.number().int().min(1).max(100_000)])
    .default('final')
    .describe('final, best or an epoch number: a saved model the job keeps'),
});
export type AliasTarget = z.infer<typeof AliasTarget>;

export const AliasChange = AliasTarget.extend({ at: z.string().describe('When the alias was pointed here') });

export const ModelAlias = z.object({
  name: AliasName,
  owner: z.string(),
  job: z.uuid(),
  checkpoint: AliasTarget.shape.checkpoint,
  updatedAt: z.string(),
  history: z.array(AliasChange).describe('What the alias pointed to, newest first (the last 100)'),
  links: z.record(z.string(), z.string()),
});
export type ModelAlias = z.infer<typeof ModelAlias>;

export const ModelAliasList = z.object({ items: z.array(ModelAlias.omit({ history: true })) });
