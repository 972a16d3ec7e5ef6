/**
 * The agent's heap, set for installs. An install moves tens of MiB through buffers outside the
 * JavaScript heap (the download, the inflated archive) while the heap itself holds a few MiB and
 * hardly grows; with V8's own growth for so small a heap, each 10 MiB install still set off two
 * or three full collections, and with them the freeing and faulting-in of those buffers again:
 * about half of an install's CPU. Letting the heap grow sixfold before the next full collection
 * took a 10 MiB install from 50 to 24 ms of CPU (BENCHMARKS.md, the Ansible comparison). An idle
 * agent is not affected: it allocates next to nothing, and V8 still shrinks the heap when idle.
 */
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 500;

/** Called once when an agent process starts, before its first step. */
export function setAgentHeap(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
