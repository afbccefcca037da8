/**
 * Stand-alone entry of the guest-kit command (the CLI's `kata-resources guest-kit` calls
 * guestKitCommand from command.ts):
 *
 *   node dist/runtime-core/guest-kit/main.js [--quiet] [--cache-dir DIR] [--hash-only]
 */
import { guestKitCommand } from './command.js';

process.exitCode = await guestKitCommand(process.argv.slice(2));
