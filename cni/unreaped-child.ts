import { EventEmitter } from 'node:events';

/**
 * A helper process that libuv does not know (helper-pair.ts's tc side, a child of ip;
 * inherited-helpers.ts's helpers, started by the shell lines): what such a child has in common for
 * CoprocessNetlink (host/netlink.ts). There is no exit status to wait for: the subclass calls
 * exited() when the helper's pipes reach EOF, which reports the signal it sent, else the code it
 * knows (0 unless told). A signal goes by pid, through signalPid, once the subclass has made sure
 * the pid is still the helper's.
 */
export abstract class UnreapedChild extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  private sentSignal: NodeJS.Signals | undefined;

  get hasExited(): boolean {
    return this.exitCode !== null || this.signalCode !== null;
  }

  ref(): void {}

  unref(): void {}

  protected signalPid(pid: number, signal: NodeJS.Signals): boolean {
    try {
      process.kill(pid, signal);
      this.sentSignal = signal;
      return true;
    } catch {
      return false;
    }
  }

  protected exited(code = 0): void {
    if (this.hasExited) return;
    if (this.sentSignal) this.signalCode = this.sentSignal;
    else this.exitCode = code;
    this.emit('exit', this.exitCode, this.signalCode);
  }
}
