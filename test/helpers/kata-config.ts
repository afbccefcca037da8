/**
 * Kata's QEMU configuration as a Kata user has it: the template (test/fixtures/kata/, with its
 * provenance) rendered with the values of Kata's Makefile, every @NAME@ replaced, as Kata's build
 * does. `paths` swaps the files that cannot exist here (Kata's own guest assets, the Rust
 * virtiofsd) for local ones, as the acceptance tests allow.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kata/', import.meta.url));

export const kataGoKeys = (): Record<string, string[]> =>
  JSON.parse(readFileSync(`${FIXTURES}config-go-keys.json`, 'utf8')) as Record<string, string[]>;

export function renderKataTemplate(overrides: Record<string, string> = {}): string {
  const template = readFileSync(`${FIXTURES}configuration-qemu.toml.in`, 'utf8');
  const values = { ...(JSON.parse(readFileSync(`${FIXTURES}makefile-defaults.json`, 'utf8')) as Record<string, string>), ...overrides };
  return template.replace(/@([A-Z0-9_]+)@/g, (m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`the Kata template uses ${m}, which makefile-defaults.json does not define`);
    return v;
  });
}

/** The template with local paths: the embedded guest kit's kernel and image, Debian's QEMU and C virtiofsd. */
export function renderKataTemplateLocal(kit: { kernel: string; rootfs: string }): string {
  return renderKataTemplate({
    KERNELPATH: kit.kernel,
    IMAGEPATH: kit.rootfs,
    QEMUPATH: '/usr/bin/qemu-system-x86_64',
    DEFVIRTIOFSDAEMON: '/usr/lib/qemu/virtiofsd',
  });
}
