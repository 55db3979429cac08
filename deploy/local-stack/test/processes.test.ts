import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { startFailure } from '../src/processes.js';

it("a server's start failure shows its last log lines and the error lines before them", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shoal-log-'));
  try {
    const log = path.join(dir, 'kafka.log');
    // as Kafka logs a taken controller port: the exception, then pages of configuration
    fs.writeFileSync(
      log,
      [
        'INFO starting',
        'ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)',
        'org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:18093: Address already in use.',
        ...Array.from({ length: 60 }, (_, i) => `\tsetting.${i} = value`),
      ].join('\n'),
    );
    const error = startFailure(new Error('kafka exited before it answered'), log);
    expect(error.message).toMatch(
      /^kafka exited before it answered; last lines of .*kafka\.log:\n/,
    );
    expect(error.message).toContain('Address already in use');
    expect(error.message).toContain('\tsetting.59 = value');
    expect(error.message).not.toContain('setting.10 ');
    expect(startFailure(new Error('x'), path.join(dir, 'none.log')).message).toContain(
      '(no log at',
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
