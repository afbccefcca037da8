/**
 * The end of a byte stream marked in band. A virtio-serial port has no end of file the host can see,
 * so the guest writes a random marker after the command's last byte; the host forwards everything
 * before it as it arrives, holding back only a tail that could be the start of the marker.
 */
export class EndMarker {
  private held: Buffer = Buffer.alloc(0);
  private seen = false;

  constructor(private readonly marker: Buffer) {
    if (marker.length === 0) throw new Error('empty end marker');
  }

  get done(): boolean {
    return this.seen;
  }

  /** The bytes that can be forwarded now (nothing once the marker was seen). */
  push(chunk: Buffer): Buffer {
    if (this.seen) return Buffer.alloc(0);
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const at = buf.indexOf(this.marker);
    if (at >= 0) {
      this.seen = true;
      this.held = Buffer.alloc(0);
      return buf.subarray(0, at);
    }
    let keep = Math.min(this.marker.length - 1, buf.length);
    while (keep > 0 && !buf.subarray(buf.length - keep).equals(this.marker.subarray(0, keep))) keep--;
    this.held = Buffer.from(buf.subarray(buf.length - keep));
    return buf.subarray(0, buf.length - keep);
  }

  /** What is still held (the stream ended without the marker). */
  flush(): Buffer {
    const b = this.held;
    this.held = Buffer.alloc(0);
    return b;
  }
}
