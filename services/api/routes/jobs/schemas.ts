import { z } from 'zod';
import { CheckpointFormat, DownloadPrecision } from '../../../../schemas/artifacts.js';
import { JobState } from '../../../../schemas/job-status.js';
import { TransferMode } from '../../../../schemas/model.js';
import { RunName, RunTag } from '../../../../schemas/run-labels.js';

export const JobParams = z.object({ id: z.string().describe('The job id (a UUID)') });

export const ValidationImageParams = JobParams.extend({
  index: z.coerce.number().int().min(0).max(10_000).describe("An index into the metrics' validationPredictions"),
});

export const ListQuery = z.strictObject({
  state: JobState.optional(),
  name: RunName.optional().describe('Jobs of this name'),
  tag: RunTag.optional().describe('Jobs with this tag'),
  mode: TransferMode.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

export const CheckpointQuery = z.strictObject({
  epoch: z
    .union([z.enum(['latest', 'final', 'best']), z.coerce.number().int().min(1).max(100_000)])
    .default('final')
    .describe('final, latest, best (by the monitored validation metric) or an epoch number'),
  format: CheckpointFormat.default('tar.gz'),
  precision: DownloadPrecision.default('fp32'),
});

export const DeleteQuery = z.strictObject({
  purge: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true')
    .describe('true: remove a finished job and everything it kept (204); false: cancel (202)'),
});

export const SubmitHeaders = z.looseObject({
  'idempotency-key': z
    .string()
    .min(1)
    .max(255)
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
    .optional()
    .describe('A retried POST with the same key returns the same job for 24 hours'),
});

export const EventsHeaders = z.looseObject({
  'last-event-id': z
    .string()
    .regex(/^\d{1,20}-\d{1,20}\/\d{1,3}$/, 'an event id this stream sent (<stream id>/<n>)')
    .optional()
    .describe('Resume after this event: the events since, none twice'),
});
