import { createHash } from 'node:crypto';
import { accessSync, constants as fsc, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveExecutable, startDaemon } from '../../../host/daemon.js';
import { KataError } from '../../../host/errors.js';
import { silentLogger, type Logger } from '../../../host/log.js';
import type { AccelChoice } from '../../config/types.js';

/**
 * Which accelerator QEMU gets: KVM only when a probe boot proves it works, else TCG.
 *
 * /dev/kvm existing is not enough: on nested or restricted hosts a KVM guest can hang (on this
 * project's test machine a guest hangs at its first switch to protected mode) or QEMU can abort
 * (`-cpu host` with MSRs the host refuses). The probe boots QEMU exactly as the driver would (q35,
 * accel=kvm, -cpu host) with a 64 KiB hand-made firmware image instead of SeaBIOS and a kernel. From
 * the reset vector it goes real mode -> protected mode -> long mode with paging (the same transitions
 * a Linux boot makes) and then writes to QEMU's isa-debug-exit port, which ends QEMU with a known
 * status. Under TCG it finishes in well under 100 ms; a working KVM is as fast. No known status within
 * the timeout means KVM does not work here. The result is cached in memory and in a file under the
 * state dir, keyed by the QEMU binary, the host kernel and the boot id, so each boot probes once.
 */

export interface AccelDecision {
  accel: 'kvm' | 'tcg';
  reason: string;
  /** True when the decision came from the cache (no probe ran now). */
  cached: boolean;
  /** How long the probe took, when one ran. */
  probeMs?: number;
}

export interface ProbeResult {
  ok: boolean;
  /** Why it failed (or "reached long mode and exited through isa-debug-exit"). */
  detail: string;
  ms: number;
}

export interface ChooseAccelOptions {
  choice: AccelChoice;
  qemuPath: string;
  log: Logger;
  /** Directory for the cache file (e.g. the state dir); none = in-memory cache only. */
  cacheDir?: string;
  /** Probe deadline (default 1500 ms). */
  timeoutMs?: number;
  /** The device node to check before probing (tests point it elsewhere). */
  kvmDevice?: string;
}

/** The value the payload writes to the debug-exit port; QEMU exits with (v << 1) | 1. */
const EXIT_VALUE = 0x31;
const PROBE_EXIT_STATUS = (EXIT_VALUE << 1) | 1;
const DEBUG_EXIT_PORT = 0xf4;
const ROM_SIZE = 64 * 1024;
/** The ROM's last 64 KiB are also visible at 0xF0000 (the ISA BIOS window): the code runs there. */
const ROM_LOW_BASE = 0xf0000;

/**
 * The probe firmware. Offsets are within the 64 KiB image; linear addresses are ROM_LOW_BASE + offset.
 * Page tables are built in RAM at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD: one 2 MiB page
 * identity-mapping the first 2 MiB, which covers the code at 0xF0000).
 */
export function probeFirmware(): Buffer {
  const code: [number[], string][] = [
    // 16-bit real mode, CS base 0xF0000 after the reset vector's far jump.
    [[0xfa], 'cli'],
    [[0x2e, 0x66, 0x0f, 0x01, 0x16, 0xa8, 0x00], 'lgdtl %cs:0xa8            ; GDTR at offset 0xa8'],
    [[0x0f, 0x20, 0xc0], 'mov %cr0,%eax'],
    [[0x66, 0x83, 0xc8, 0x01], 'or $1,%eax                ; CR0.PE'],
    [[0x0f, 0x22, 0xc0], 'mov %eax,%cr0'],
    [[0x66, 0xea, 0x1a, 0x00, 0x0f, 0x00, 0x08, 0x00], 'ljmpl $0x08,$0xf001a       ; 32-bit code segment'],
    // 0x1a: 32-bit protected mode.
    [[0x66, 0xb8, 0x10, 0x00], 'mov $0x10,%ax             ; data segment'],
    [[0x8e, 0xd8], 'mov %ax,%ds'],
    [[0x8e, 0xc0], 'mov %ax,%es'],
    [[0x8e, 0xd0], 'mov %ax,%ss'],
    [[0xbf, 0x00, 0x10, 0x00, 0x00], 'mov $0x1000,%edi'],
    [[0xb9, 0x00, 0x0c, 0x00, 0x00], 'mov $0xc00,%ecx           ; 3 pages of dwords'],
    [[0x31, 0xc0], 'xor %eax,%eax'],
    [[0xf3, 0xab], 'rep stosl                 ; clear the page tables'],
    [[0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00], 'movl $0x2003,0x1000       ; PML4[0] -> PDPT'],
    [[0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00], 'movl $0x3003,0x2000       ; PDPT[0] -> PD'],
    [[0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00], 'movl $0x83,0x3000         ; PD[0] = 2 MiB page at 0'],
    [[0xb8, 0x00, 0x10, 0x00, 0x00], 'mov $0x1000,%eax'],
    [[0x0f, 0x22, 0xd8], 'mov %eax,%cr3'],
    [[0x0f, 0x20, 0xe0], 'mov %cr4,%eax'],
    [[0x83, 0xc8, 0x20], 'or $0x20,%eax             ; CR4.PAE'],
    [[0x0f, 0x22, 0xe0], 'mov %eax,%cr4'],
    [[0xb9, 0x80, 0x00, 0x00, 0xc0], 'mov $0xc0000080,%ecx      ; EFER'],
    [[0x0f, 0x32], 'rdmsr'],
    [[0x0d, 0x00, 0x01, 0x00, 0x00], 'or $0x100,%eax            ; EFER.LME'],
    [[0x0f, 0x30], 'wrmsr'],
    [[0x0f, 0x20, 0xc0], 'mov %cr0,%eax'],
    [[0x0d, 0x00, 0x00, 0x00, 0x80], 'or $0x80000000,%eax       ; CR0.PG'],
    [[0x0f, 0x22, 0xc0], 'mov %eax,%cr0'],
    [[0xea, 0x81, 0x00, 0x0f, 0x00, 0x18, 0x00], 'ljmp $0x18,$0xf0081       ; 64-bit code segment'],
    // 0x81: 64-bit long mode.
    [[0xb0, EXIT_VALUE], 'mov $0x31,%al'],
    [[0xe6, DEBUG_EXIT_PORT], 'out %al,$0xf4             ; isa-debug-exit: QEMU ends'],
    [[0xf4], 'hlt'],
    [[0xeb, 0xfd], 'jmp .-1'],
  ];
  const rom = Buffer.alloc(ROM_SIZE, 0xf4); // hlt everywhere else
  let off = 0;
  for (const [bytes] of code) {
    rom.set(bytes, off);
    off += bytes.length;
  }
  if (off !== 0x88) throw new KataError('E_INTERNAL', `accel probe firmware: code is ${off} bytes, expected 0x88`);
  // 0x88: GDT: null, 0x08 32-bit code, 0x10 data, 0x18 64-bit code (flat, 4 GiB).
  const gdt = [0n, 0x00cf9a000000ffffn, 0x00cf92000000ffffn, 0x00af9a000000ffffn];
  for (const [i, d] of gdt.entries()) rom.writeBigUInt64LE(d, 0x88 + i * 8);
  // 0xa8: GDTR = limit, base.
  rom.writeUInt16LE(gdt.length * 8 - 1, 0xa8);
  rom.writeUInt32LE(ROM_LOW_BASE + 0x88, 0xaa);
  // Reset vector (offset 0xFFF0, linear 0xFFFFFFF0): ljmp $0xf000,$0x0000.
  rom.set([0xea, 0x00, 0x00, 0x00, 0xf0], 0xfff0);
  return rom;
}

/** Boot the probe firmware under `accel` and report whether it reached the exit port in time. */
export async function runAccelProbe(qemuPath: string, accel: 'kvm' | 'tcg', log: Logger, timeoutMs = 1500): Promise<ProbeResult> {
  const dir = await mkdtemp(join(tmpdir(), 'kata-resources-accel-'));
  const fw = join(dir, 'probe.rom');
  const started = Date.now();
  try {
    await writeFile(fw, probeFirmware());
    const d = await startDaemon({
      name: 'qemu-accel-probe',
      file: qemuPath,
      args: [
        '-machine',
        `q35,accel=${accel}`,
        '-cpu',
        accel === 'kvm' ? 'host' : 'max',
        '-m',
        '16',
        '-nodefaults',
        '-no-user-config',
        '-display',
        'none',
        '-bios',
        fw,
        '-device',
        `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`,
      ],
      // The probe's exit is its answer, not a crash: keep the daemon quiet and report through the result.
      log: log.child({ probe: accel }, { level: 'silent' }),
      stderrLines: 5,
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    const first = await Promise.race([d.exited, timedOut]);
    clearTimeout(timer);
    const ms = Date.now() - started;
    if (first === 'timeout') {
      await d.stop({ graceMs: 0 });
      return {
        ok: false,
        ms,
        detail: `the probe guest did not finish within ${timeoutMs} ms (it hangs under ${accel}: a real guest would hang too)`,
      };
    }
    if (first.code === PROBE_EXIT_STATUS)
      return { ok: true, ms, detail: 'the probe guest reached long mode and exited through isa-debug-exit' };
    const err = d
      .stderrTail()
      .filter((l) => !/warning: host doesn't support requested feature/.test(l))
      .join(' | ');
    return {
      ok: false,
      ms,
      detail: `QEMU ended with ${first.signal ?? `status ${first.code}`} instead of ${PROBE_EXIT_STATUS}${err ? `: ${err}` : ''}`,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface CacheEntry {
  key: string;
  accel: 'kvm' | 'tcg';
  reason: string;
  probeMs: number;
  at: string;
}

const memo = new Map<string, AccelDecision>();

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** What must be the same for a cached probe result to hold: QEMU binary, host kernel, this boot. */
function cacheKey(qemuPath: string): string {
  const bin = resolveExecutable(qemuPath) ?? qemuPath;
  let id = bin;
  try {
    const st = statSync(bin);
    id += `:${st.size}:${st.mtimeMs}`;
  } catch {
    // missing binary: the probe will say so
  }
  return createHash('sha256').update(`${id}\n${release()}\n${bootId()}`).digest('hex').slice(0, 32);
}

const CACHE_FILE = 'accel-probe.json';

function readCache(dir: string, key: string): CacheEntry | undefined {
  try {
    const e = JSON.parse(readFileSync(join(dir, CACHE_FILE), 'utf8')) as CacheEntry;
    return e.key === key && (e.accel === 'kvm' || e.accel === 'tcg') ? e : undefined;
  } catch {
    return undefined;
  }
}

async function writeCache(dir: string, e: CacheEntry): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `${CACHE_FILE}.${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(e)}\n`, { mode: 0o600 });
  await rename(tmp, join(dir, CACHE_FILE));
}

/** Forget the in-process cache (tests). */
export function clearAccelMemo(): void {
  memo.clear();
}

/**
 * Decide the accelerator and log the choice with its reason. accel = "tcg" never probes; "auto"
 * probes (once per boot, cached) when /dev/kvm is usable; "kvm" probes too and fails if KVM does not
 * work, rather than starting a VM that would hang.
 */
export async function chooseAccel(o: ChooseAccelOptions): Promise<AccelDecision> {
  const log = o.log;
  const decide = (d: AccelDecision): AccelDecision => {
    log.info({ accel: d.accel, reason: d.reason, cached: d.cached, probeMs: d.probeMs }, `accelerator: ${d.accel} (${d.reason})`);
    return d;
  };
  if (o.choice === 'tcg') return decide({ accel: 'tcg', reason: 'accel = "tcg" in the configuration; no probe', cached: false });

  const dev = o.kvmDevice ?? '/dev/kvm';
  let unusable: string | undefined;
  if (!existsSync(dev)) unusable = `${dev} does not exist (no KVM module or not exposed to this host)`;
  else {
    try {
      accessSync(dev, fsc.R_OK | fsc.W_OK);
    } catch {
      unusable = `${dev} is not readable and writable by this user`;
    }
  }

  let result: AccelDecision;
  if (unusable !== undefined) {
    result = { accel: 'tcg', reason: unusable, cached: false };
  } else {
    const key = cacheKey(o.qemuPath);
    const hit = memo.get(key) ?? (o.cacheDir ? readCache(o.cacheDir, key) : undefined);
    if (hit) {
      result = { accel: hit.accel, reason: hit.reason, cached: true };
    } else {
      const p = await runAccelProbe(o.qemuPath, 'kvm', log, o.timeoutMs);
      result = p.ok
        ? { accel: 'kvm', reason: `KVM probe boot succeeded in ${p.ms} ms`, cached: false, probeMs: p.ms }
        : { accel: 'tcg', reason: `KVM probe failed: ${p.detail}`, cached: false, probeMs: p.ms };
      if (o.cacheDir) {
        await writeCache(o.cacheDir, {
          key,
          accel: result.accel,
          reason: result.reason,
          probeMs: p.ms,
          at: new Date().toISOString(),
        }).catch((err: unknown) => {
          log.warn({ err, dir: o.cacheDir }, 'could not cache the accelerator probe result');
        });
      }
    }
    memo.set(key, { accel: result.accel, reason: result.reason, cached: true });
  }

  if (o.choice === 'kvm' && result.accel !== 'kvm') {
    throw new KataError(
      'E_KERNEL_FEATURE',
      `accel = "kvm" is configured but KVM does not work on this host: ${result.reason}; set hypervisor.qemu.accel = "auto" or "tcg"`,
      { reason: result.reason },
    );
  }
  return decide(result);
}

/** For `kata-resources check`: does a KVM guest really run here? */
export async function kvmProbe(qemuPath: string): Promise<{ usable: boolean; reason: string }> {
  const p = await runAccelProbe(qemuPath, 'kvm', silentLogger());
  return { usable: p.ok, reason: p.ok ? `probe boot in ${p.ms} ms` : `a probe boot under KVM ${p.detail}` };
}
