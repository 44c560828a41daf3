import { z } from 'zod';

/** A name a team finds its jobs and sweeps by (not unique: a filter returns every run of that name). */
export const RunName = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[\w][\w .:/@+-]*$/, 'letters, digits, spaces and _ . : / @ + -, starting with a letter, digit or _');

export const RunTag = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\w][\w.:/@+-]*$/, 'letters, digits and _ . : / @ + -, no spaces');

export const RunTags = z
  .array(RunTag)
  .max(20)
  .refine((tags) => new Set(tags).size === tags.length, 'tags repeat')
  .optional();
