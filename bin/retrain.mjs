#!/usr/bin/env node
// The CLI is TypeScript run through tsx, as the service itself is: no separate build step to forget.
import { register } from 'tsx/esm/api';

register();
await import('../cli/retrain.ts');
