import t, { type Test } from 'tap';
import { isKataError } from '../../../host/errors.js';
import { parseConfig } from '../../../runtime-core/config/load-config.js';
import { CONFIG_SCHEMA, type SchemaNode } from '../../../runtime-core/config/schema.js';

const FILE = '/etc/krt/configuration.toml';

interface Leaf {
  section: string;
  key: string;
  node: SchemaNode;
}

/** Every leaf key the schema knows, with its table. */
function leaves(node: SchemaNode, prefix: string[] = []): Leaf[] {
  const out: Leaf[] = [];
  for (const [k, sub] of Object.entries(node.properties ?? {})) {
    if (sub.type === 'object' && sub.properties) out.push(...leaves(sub, [...prefix, k]));
    else if (prefix.length > 0) out.push({ section: prefix.join('.'), key: k, node: sub });
  }
  return out;
}

/** A TOML value of the wrong type for the node, and the words the message must use for the expected type. */
function wrongValue(node: SchemaNode): { toml: string; expected: RegExp } {
  switch (node.type) {
    case 'integer':
      return { toml: '"12"', expected: /must be an integer \(got string "12"\)/ };
    case 'number':
      return { toml: '"1.5"', expected: /must be a number \(got string "1\.5"\)/ };
    case 'boolean':
      return { toml: '"yes"', expected: /must be a boolean/ };
    case 'string':
      return { toml: '42', expected: /must be a string \(got the integer 42\)/ };
    case 'array':
      return { toml: '"--flag"', expected: /must be an array/ };
    default:
      throw new Error(`no wrong value for ${String(node.type)}`);
  }
}

function expectConfigError(t: Test, text: string, key: string, expected: RegExp): void {
  try {
    parseConfig(text, FILE, { checkFiles: false });
    t.fail(`${key}: accepted`);
  } catch (e) {
    t.ok(isKataError(e, 'E_CONFIG'), `${key}: E_CONFIG`);
    const msg = (e as Error).message;
    t.ok(msg.startsWith(`${FILE}: `), `${key}: message names the file`);
    t.match(msg, `${key} `, `${key}: message names the key`);
    t.match(msg, expected, `${key}: message says what was expected`);
    t.ok((e as { details: { keys: string[] } }).details.keys.includes(key), `${key}: details.keys lists it`);
  }
}

t.test('a wrong type for each key fails with the file, the dotted key and the expected type', async (t) => {
  const all = leaves(CONFIG_SCHEMA as unknown as SchemaNode);
  t.ok(all.length >= 30, `schema has ${all.length} keys`);
  for (const { section, key, node } of all) {
    const { toml, expected } = wrongValue(node);
    expectConfigError(t, `[${section}]\n${key} = ${toml}\n`, `${section}.${key}`, expected);
  }
});

t.test('out-of-range integers and bad enum values name the allowed range or values, and why a Kata value is refused', async (t) => {
  const cases: [string, string, string, RegExp][] = [
    ['hypervisor.qemu', 'default_memory', '-1', /from 0 to 16777216/],
    ['hypervisor.qemu', 'pcie_root_port', '-1', />= 0 \(got the integer -1\)/],
    ['hypervisor.qemu', 'network_queues', '0', /from 1 to 16/],
    ['hypervisor.qemu', 'memory_slots', '-1', /from 0 to 255/],
    ['hypervisor.qemu', 'shared_fs', '"virtio-9p"', /one of "virtio-fs", "none" \(got string "virtio-9p": only virtio-fs shares/],
    ['hypervisor.qemu', 'shared_fs', '"virtio-fs-nydus"', /nydus image acceleration is not implemented/],
    ['hypervisor.qemu', 'block_device_driver', '"nvdimm"', /one of "virtio-blk", "virtio-scsi" \(got string "nvdimm": block volumes/],
    ['hypervisor.qemu', 'block_device_nbd_reconnect_delay', '-1', /from 0 to 3600/],
    ['hypervisor.qemu', 'block_device_nbd_open_timeout', '301', /from 0 to 300/],
    ['hypervisor.qemu', 'virtio_fs_cache', '"none"', /one of "never", "metadata", "auto", "always"/],
    ['hypervisor.qemu', 'virtio_fs_queue_size', '2048', /one of 64, 128, 256, 512, 1024 \(got the integer 2048: QEMU's vhost-user-fs-pci/],
    ['hypervisor.qemu', 'accel', '"hvf"', /one of "auto", "kvm", "tcg"/],
    ['hypervisor.qemu', 'machine_type', '"pc"', /one of "q35" \(got string "pc": i440fx has no PCIe root ports/],
    ['hypervisor.qemu', 'machine_type', '"microvm"', /microvm does not have/],
    ['hypervisor.qemu', 'rootfs_type', '"btrfs"', /one of "ext4", "xfs", "erofs"/],
    ['hypervisor.qemu', 'path', '""', /non-empty string/],
    ['runtime', 'internetworking_model', '"bridged"', /one of "tcfilter", "macvtap", "none"/],
    ['runtime', 'state_dir', '"relative/dir"', /absolute path/],
    ['agent.kata', 'dial_timeout', '-1', /from 0 to 3600/],
  ];
  for (const [section, key, value, expected] of cases) {
    expectConfigError(t, `[${section}]\n${key} = ${value}\n`, `${section}.${key}`, expected);
  }
});

t.test('array items are checked one by one', async (t) => {
  expectConfigError(
    t,
    '[hypervisor.qemu]\nvirtio_fs_extra_args = ["--ok", 3]\n',
    'hypervisor.qemu.virtio_fs_extra_args[1]',
    /must be a string/,
  );
});

t.test('a table given as a scalar is a type error of the table', async (t) => {
  expectConfigError(t, 'runtime = 3\n', 'runtime', /must be a table/);
  expectConfigError(t, '[hypervisor]\nqemu = "x"\n', 'hypervisor.qemu', /must be a table/);
});

t.test('all problems of a file are reported together', async (t) => {
  try {
    parseConfig('[hypervisor.qemu]\ndefault_memory = "1G"\naccel = "hvf"\n[runtime]\nenable_debug = 1\n', FILE, { checkFiles: false });
    t.fail('accepted');
  } catch (e) {
    t.same([...(e as { details: { keys: string[] } }).details.keys].sort(), [
      'hypervisor.qemu.accel',
      'hypervisor.qemu.default_memory',
      'runtime.enable_debug',
    ]);
  }
});

t.test('files the configuration names must exist', async (t) => {
  try {
    parseConfig('[hypervisor.qemu]\nkernel = "/nonexistent/krt-vmlinux"\npath = "/nonexistent/krt-qemu"\n', FILE);
    t.fail('accepted');
  } catch (e) {
    t.ok(isKataError(e, 'E_CONFIG'));
    t.match((e as Error).message, /hypervisor\.qemu\.kernel names \/nonexistent\/krt-vmlinux, which does not exist/);
    t.match((e as Error).message, /hypervisor\.qemu\.path names \/nonexistent\/krt-qemu, which is not an executable file/);
  }
});

t.test('disable_new_netns needs internetworking_model = "none" (Kata\'s rule)', async (t) => {
  expectConfigError(
    t,
    '[runtime]\ndisable_new_netns = true\n',
    'runtime.disable_new_netns',
    /only with runtime\.internetworking_model = "none" \(it is "tcfilter"\)/,
  );
  expectConfigError(
    t,
    '[runtime]\ninternetworking_model = "macvtap"\ndisable_new_netns = true\n',
    'runtime.disable_new_netns',
    /it is "macvtap"/,
  );
});

t.test('cross-key rules name the key to change', async (t) => {
  // 1.5 vCPUs are 2 (Kata rounds up), above a maximum of 1 (the host here has at least 2 CPUs).
  expectConfigError(
    t,
    '[hypervisor.qemu]\ndefault_vcpus = 1.5\ndefault_maxvcpus = 1\n',
    'hypervisor.qemu.default_vcpus',
    /above hypervisor\.qemu\.default_maxvcpus/,
  );
  expectConfigError(
    t,
    '[hypervisor.qemu]\ndefault_memory = 4096\ndefault_maxmemory = 1024\n',
    'hypervisor.qemu.default_memory',
    /above hypervisor\.qemu\.default_maxmemory/,
  );
  expectConfigError(
    t,
    '[hypervisor.qemu]\nseccompsandbox = "on,spawn=maybe"\n',
    'hypervisor.qemu.seccompsandbox',
    /spawn takes allow, deny/,
  );
  expectConfigError(t, '[hypervisor.qemu]\nseccompsandbox = "enabled"\n', 'hypervisor.qemu.seccompsandbox', /starts with on or off/);
});

t.test('what QEMU cannot do is refused at load time', async (t) => {
  expectConfigError(
    t,
    '[hypervisor.qemu]\nvirtio_fs_cache_size = 1024\n',
    'hypervisor.qemu.virtio_fs_cache_size',
    /DAX window, which qemu does not support/,
  );
});

t.test('a hypervisor table without a driver is refused', async (t) => {
  expectConfigError(t, '[hypervisor.firecracker]\npath = "/usr/bin/firecracker"\n', 'hypervisor.firecracker', /no driver/);
  expectConfigError(t, '[hypervisor.clh]\npath = "/usr/bin/cloud-hypervisor"\n', 'hypervisor.clh', /no driver/);
});
