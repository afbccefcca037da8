/**
 * Node built-ins the agent loads on first use rather than at start. The agent is one bundle whose
 * top-level requires all run before it serves; `child_process`, `net` (and with them the stream
 * machinery) and `fs/promises` are 40 modules the serve path does not need, and under TCG every
 * module loaded before the port is open delays the sandbox's boot. process.getBuiltinModule
 * (Node >= 20.16) returns the module synchronously, loading it the first time.
 */
export const fsp = (): typeof import('node:fs/promises') => process.getBuiltinModule('node:fs/promises');
export const childProcess = (): typeof import('node:child_process') => process.getBuiltinModule('node:child_process');
export const net = (): typeof import('node:net') => process.getBuiltinModule('node:net');
