import type { z } from 'zod';

/** What the domain throws when a request cannot be served as asked. Each kind maps to one HTTP status in the API's problem handler. */
export abstract class DomainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export interface FieldError {
  /** Dotted path of the field, e.g. `dataset.path`, `fineTuning` or `files[2]`. */
  path: string;
  message: string;
  [detail: string]: unknown;
}

export type InputLocation = 'body' | 'query' | 'params' | 'headers';

/** Input that names a field the service cannot accept: every failing field is listed. */
export class InvalidInputError extends DomainError {
  constructor(
    readonly errors: FieldError[],
    readonly location: InputLocation = 'body',
    message = `${location} failed validation: ${errors.map((e) => e.path).join(', ')}`,
  ) {
    super(message);
  }

  static field(path: string, message: string, location: InputLocation = 'body'): InvalidInputError {
    return new InvalidInputError([{ path, message }], location, `${path}: ${message}`);
  }
}

export class NotFoundError extends DomainError {}

/** The resource exists but its state does not allow this (a finished job cannot be cancelled). */
export class ConflictError extends DomainError {
  constructor(
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export class IdempotencyKeyReusedError extends DomainError {}

export class TooLargeError extends DomainError {}

/** A request body that arrives too slowly to be served to its end (it would hold a slot others need). */
export class SlowSenderError extends DomainError {}

/** The caller has used up a quota; it frees as their jobs finish or their data is deleted. */
export class QuotaExceededError extends DomainError {
  constructor(
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** A dependency (Redis) cannot be reached; the request may succeed if retried later. */
export class UnavailableError extends DomainError {}

/** The caller holds its share of a capacity every owner shares (event streams, upload slots, a thread's queue). */
export class FairShareError extends DomainError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** The disk or store the request needs is full: not the caller's fault, and no retry soon will help. */
export class StorageFullError extends DomainError {}

/** ENOSPC and EDQUOT: a write that failed for want of room. */
export const isDiskFull = (error: unknown): boolean => ['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException | null)?.code ?? '');

/**
 * Every failing field of a zod parse, with unknown keys, a bad discriminator and a missing field named
 * precisely (a missing one is `required`, when the parse reported its input).
 */
export function fieldErrorsOf(error: z.ZodError): FieldError[] {
  return error.issues.flatMap((issue) => {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'invalid_type' && 'input' in issue && issue.input === undefined)
      return [{ path: at || '(root)', message: 'required' }];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: at ? `${at}.${key}` : key, message: `"${key}" is not a field here` }));
    }
    if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      return [{ path: at || String(issue.discriminator), message: issue.message }];
    }
    return [{ path: at || '(root)', message: issue.message }];
  });
}

/** Parses `value` or throws an InvalidInputError naming every failing field. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown, location: InputLocation = 'body'): z.infer<T> {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  throw new InvalidInputError(fieldErrorsOf(result.error), location);
}
