/** Reads a password: from standard input with --password-stdin, or typed at a hidden prompt. */
import { CliError, EXIT } from './exit-codes.ts';
import type { Io } from './output.ts';

export async function readSecret(io: Io, options: { fromStdin: boolean; prompt: string }): Promise<string> {
  if (options.fromStdin) {
    const text = (await io.readStdin()).replace(/\r?\n$/, '');
    if (text === '')
      throw new CliError(
        EXIT.usage,
        'Standard input was empty; pipe the password in, e.g. `cat pw | gantry … --password-stdin`.',
      );
    return text;
  }
  if (!io.stdinIsTty) {
    throw new CliError(
      EXIT.usage,
      'No terminal to ask for the password; pass it on standard input with --password-stdin.',
    );
  }
  return promptHidden(options.prompt);
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    let value = '';
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new CliError(EXIT.usage, 'Cancelled.'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
