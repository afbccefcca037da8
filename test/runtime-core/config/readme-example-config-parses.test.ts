import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../../runtime-core/config/load-config.js';

const root = join(import.meta.dirname, '..', '..', '..', '..');

t.test('the configuration example in the README is a valid file', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  // The example is the first toml block of the "Configuration" section (containerd snippets come earlier).
  const section = readme.slice(readme.indexOf('\n## Configuration\n'));
  const m = /```toml\n([\s\S]*?)```/.exec(section);
  t.ok(readme.includes('\n## Configuration\n') && m, 'README has a Configuration section with a toml block');
  const warnings: string[] = [];
  const log = {
    warn: (o: unknown, msg?: string) => warnings.push(String(msg ?? o)),
    info() {},
    debug() {},
    error() {},
    child() {
      return log;
    },
  };
  const cfg = parseConfig(m![1]!, 'README.md', { checkFiles: false, log: log as never });
  t.equal(cfg.runtime.internetworkingModel, 'tcfilter');
  t.equal(cfg.hypervisor.sharedFs, 'virtio-fs');
  t.same(warnings, [], 'no unknown keys');
});
