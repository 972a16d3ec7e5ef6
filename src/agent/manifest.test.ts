import { describe, expect, it } from 'vitest';
import { ManifestError, parseManifest } from './manifest.ts';

function refusal(text: string): string {
  try {
    parseManifest(text);
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestError);
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('gantry.yaml', () => {
  it('reads commands, health and environment with defaults', () => {
    expect(
      parseManifest(
        'start: node server.js &\nstop: kill $(cat pid)\nhealth:\n  http: http://127.0.0.1:8081/healthz\n  retries: 3\nenv:\n  PORT: 8081\n',
      ),
    ).toEqual({
      start: 'node server.js &',
      stop: 'kill $(cat pid)',
      health: { http: 'http://127.0.0.1:8081/healthz', retries: 3, interval: 1, timeout: 5 },
      env: { PORT: '8081' },
    });
  });

  it('names the line of a syntax error', () => {
    expect(refusal('start: a\nhealth: [\n')).toMatch(/line \d+, column \d+/);
  });

  it('refuses unknown keys, repeated keys and bad values, saying which', () => {
    expect(refusal('strat: node x')).toContain("unknown key 'strat'");
    expect(refusal('start: a\nstart: b')).toMatch(/unique|duplicate/i);
    expect(refusal('health:\n  retries: 3')).toContain('http');
    expect(refusal('env:\n  1BAD: x')).toContain('1BAD');
  });

  it('reads blue-green slots and the switch hook; slots need it, and exactly blue and green', () => {
    const health = 'http://127.0.0.1:$' + '{PORT}/health'; // the manifest's placeholder, not JavaScript's
    expect(
      parseManifest(
        'supervise: true\nstart: node server.js\nswitch: sh switch.sh\nslots:\n  blue: { PORT: 8081 }\n  green: { PORT: 8082 }\nhealth:\n  http: ' +
          health +
          '\n',
      ),
    ).toMatchObject({
      switch: 'sh switch.sh',
      slots: { blue: { PORT: '8081' }, green: { PORT: '8082' } },
      health: { http: health },
    });
    expect(refusal('slots:\n  blue: {}\n  green: {}')).toContain("'slots' needs 'switch'");
    // A switch without slots is for blue-green by two target groups: a router runs it.
    expect(parseManifest('switch: sh switch.sh\n')).toMatchObject({ switch: 'sh switch.sh' });
    expect(refusal('switch: x\nslots:\n  blue: {}\n  red: {}')).toContain('exactly blue and green');
    expect(refusal('switch: x\nslots:\n  blue: { 9X: 1 }\n  green: {}')).toContain("slots.blue name '9X'");
    expect(refusal('switch: x\nslots: [blue, green]')).toContain("'slots' must map blue and green");
  });

  it('B04: runs no code from custom tags and stops alias bombs quickly', () => {
    expect(refusal('start: !!js/function "function(){ process.exit(9) }"')).toMatch(/tag/i);
    const bomb = [
      'a: &a ["x","x","x","x","x","x","x","x","x"]',
      ...Array.from(
        { length: 8 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`,
      ),
    ].join('\n');
    const t0 = Date.now();
    expect(() => parseManifest(bomb)).toThrow();
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
