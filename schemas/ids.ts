import { z } from 'zod';

/** Job and upload ids are UUIDs: anything else names nothing (404), and is never used in a key. */
export const isUuid = (id: string): boolean => z.uuid().safeParse(id).success;
