import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { fieldErrorsOf, InvalidInputError, parseInput } from '../../common/errors.js';

describe('field errors', () => {
  const Shape = z.discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('a'), size: z.number().int() }),
    z.strictObject({ kind: z.literal('b') }),
  ]);

  it('names each unknown key, a bad discriminator, a bad nested field and a bad root', () => {
    const paths = (value: unknown) => fieldErrorsOf(Shape.safeParse(value).error!).map((e) => e.path);
    assert.deepEqual(paths({ kind: 'a', size: 1, colour: 'red', shade: 2 }), ['colour', 'shade']);
    assert.deepEqual(paths({ kind: 'c' }), ['kind']);
    assert.deepEqual(paths({ kind: 'a', size: 1.5 }), ['size']);
    assert.deepEqual(paths(7), ['(root)']);
  });

  it('parses or throws an InvalidInputError that lists every field and where it was', () => {
    assert.deepEqual(parseInput(Shape, { kind: 'b' }), { kind: 'b' });
    assert.throws(
      () => parseInput(Shape, { kind: 'a', size: 'x', extra: 1 }, 'query'),
      (error: unknown) =>
        error instanceof InvalidInputError &&
        error.location === 'query' &&
        error.errors.map((e) => e.path).join() === 'size,extra' &&
        error.message === 'query failed validation: size, extra',
    );
  });
});
