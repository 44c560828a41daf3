import { z } from 'zod';

/** Who owns a job or a dataset: the name an API key was created for. */
export const Owner = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lower-case letters, digits, ".", "_" or "-", at most 64, starting with a letter or digit');
export type Owner = z.infer<typeof Owner>;

/** The owner of everything in single-user mode (loopback, no keys configured), and of jobs from before owners existed. */
export const LOCAL_OWNER = 'local';
/** The owner the admin key acts as when it creates something. */
export const ADMIN_OWNER = 'admin';
export const RESERVED_OWNERS: readonly string[] = [LOCAL_OWNER, ADMIN_OWNER];

/** An API key as stored in Redis: the key itself is shown once and kept only as its SHA-256. */
export const ApiKeyRecord = z.object({
  id: z.string().describe('Public id of the key (the part after rtk_ and before the secret); revoke by it'),
  owner: Owner,
  sha256: z.string(),
  createdAt: z.string(),
});
export type ApiKeyRecord = z.infer<typeof ApiKeyRecord>;

/** Who a request acts for. */
export interface Caller {
  owner: Owner;
  admin: boolean;
}
