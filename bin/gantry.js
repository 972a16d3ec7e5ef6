#!/usr/bin/env node
// The `gantry` executable. Loads the TypeScript sources through tsx, so what runs is exactly what
// is in src/ with no build step between a change and its use.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
