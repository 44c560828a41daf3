import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig } from '../../schemas/config.js';

describe('configuration from the environment', () => {
  it('has a default for every variable and resolves folders to absolute paths', () => {
    const config = loadConfig({});
    assert.equal(config.TFJS_BACKEND, 'auto');
    assert.equal(config.PORT, 8080);
    assert.equal(config.DATA_DIR, path.resolve('data'));
  });

  it('takes every backend name of the preference chain, and auto', () => {
    for (const name of ['auto', 'node-gpu', 'node', 'wasm', 'cpu']) assert.equal(loadConfig({ TFJS_BACKEND: name }).TFJS_BACKEND, name);
  });

  it('refuses bad values naming each variable', () => {
    assert.throws(
      () => loadConfig({ TFJS_BACKEND: 'cuda', PORT: '99999', LOG_LEVEL: 'loud' }),
      (error: Error) => {
        for (const name of ['TFJS_BACKEND', 'PORT', 'LOG_LEVEL']) assert.match(error.message, new RegExp(`^  ${name}: `, 'm'));
        return true;
      },
    );
  });
});
