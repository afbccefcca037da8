/**
 * Publishes containerd task events the way containerd 1.6's shim library does
 * (runtime/v2/shim/publisher.go): `containerd.services.events.ttrpc.v1.Events/Forward` over ttRPC
 * at $TTRPC_ADDRESS, connected lazily on the first event, each call with the metadata
 * `containerd-namespace-ttrpc: <namespace>` and a 5 s timeout, an Envelope with a non-zero
 * timestamp (when publish() was called), the namespace, the topic and the event as an Any whose
 * type URL is the bare proto name ("containerd.events.TaskExit").
 *
 * Unlike Go's publisher, whose requeued events can overtake later ones, delivery is strictly in
 * publish() order: one queue, one event on the wire at a time, a failed event retried in place
 * (after 1 s, 2 s, ... up to 5 retries, on a fresh connection if the old one closed) before the
 * next is sent. So an exit event never overtakes the start event published before it. An answer
 * that retrying cannot change (e.g. INVALID_ARGUMENT for a bad topic) drops the event at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { create, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import { type Logger, rootLogger } from '../../host/log.js';
import { TtrpcClient } from '../../ttrpc/client.js';
import { GrpcCode } from '../../ttrpc/codes.js';
import { TtrpcError } from '../../ttrpc/errors.js';
import { type Envelope, EnvelopeSchema, Events } from '../generated/containerd/api/services/ttrpc/events/v1/events_pb.js';
import { type TaskEventSchema, topicOf } from './topics.js';

export interface PublisherOptions {
  /** containerd's ttRPC address, $TTRPC_ADDRESS ("<grpc address>.ttrpc"). */
  address: string;
  /** The containerd namespace of the shim (its -namespace flag). */
  namespace: string;
  logger?: Logger;
  /** Per Forward call; default 5000 ms, as the runc shim. */
  callTimeoutMs?: number;
  /** Retries after the first attempt; default 5. */
  retries?: number;
  /** Retry n waits n times this; default 1000 ms. */
  retryDelayMs?: number;
  /** Events waiting beyond this are refused (publish resolves false); default 2048, as Go's queue. */
  maxQueue?: number;
}

interface Item {
  envelope: Envelope;
  done(delivered: boolean): void;
}

/** Answers that a retry cannot change. */
const PERMANENT = new Set<number>([
  GrpcCode.INVALID_ARGUMENT,
  GrpcCode.NOT_FOUND,
  GrpcCode.ALREADY_EXISTS,
  GrpcCode.PERMISSION_DENIED,
  GrpcCode.RESOURCE_EXHAUSTED,
  GrpcCode.FAILED_PRECONDITION,
  GrpcCode.UNIMPLEMENTED,
  GrpcCode.UNAUTHENTICATED,
]);

export class EventPublisher {
  private readonly queue: Item[] = [];
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private client: Promise<TtrpcClient> | undefined;
  /** Whether drain() is running; set and cleared synchronously, so no event is ever left without a worker. */
  private draining = false;
  private idle: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly opts: PublisherOptions) {
    this.log = (opts.logger ?? rootLogger()).child({ component: 'events', namespace: opts.namespace });
  }

  /**
   * Queue an event; its topic follows from its type. Resolves true once containerd took it, false
   * if it was dropped (retries exhausted, a permanent error, queue full, or the publisher closed);
   * never rejects, so callers that do not care need not await it. Throws (synchronously) only for
   * an event that cannot be encoded, a bug in the caller.
   */
  publish<D extends TaskEventSchema>(schema: D, event: MessageInitShape<D>): Promise<boolean> {
    const topic = topicOf(schema);
    if (this.closed || this.queue.length >= (this.opts.maxQueue ?? 2048)) {
      this.log.warn({ topic, closed: this.closed, queued: this.queue.length }, 'event dropped: publisher closed or queue full');
      return Promise.resolve(false);
    }
    const envelope = create(EnvelopeSchema, {
      timestamp: timestampNow(),
      namespace: this.opts.namespace,
      topic,
      event: { typeUrl: schema.typeName, value: toBinary(schema, create(schema, event)) },
    });
    return new Promise((done) => {
      this.queue.push({ envelope, done });
      if (!this.draining) {
        this.draining = true;
        this.idle = this.drain();
      }
    });
  }

  /**
   * Stop taking events, deliver what is queued for up to timeoutMs (default 5000), then drop the
   * rest (their publish() resolves false) and close the connection.
   */
  async close(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.closed = true;
    if (this.draining) {
      const timer = sleep(opts.timeoutMs ?? 5000, 'timeout', { ref: false });
      if ((await Promise.race([this.idle.then(() => 'drained'), timer])) === 'timeout') {
        this.log.warn({ dropped: this.queue.length }, 'events not delivered before close');
        this.abort.abort();
        await this.idle;
      }
    }
    this.abort.abort();
    const client = this.client;
    this.client = undefined;
    if (client) (await client.catch(() => undefined))?.close();
  }

  private async drain(): Promise<void> {
    try {
      for (let item = this.queue[0]; item; item = this.queue[0]) {
        const delivered = this.abort.signal.aborted ? false : await this.deliver(item.envelope);
        this.queue.shift();
        item.done(delivered);
      }
    } finally {
      this.draining = false;
    }
  }

  private async deliver(envelope: Envelope): Promise<boolean> {
    const retries = this.opts.retries ?? 5;
    const where = { topic: envelope.topic, address: this.opts.address };
    for (let attempt = 0; ; attempt++) {
      try {
        const client = await this.connection();
        await client.call(
          Events.method.forward,
          { envelope },
          {
            timeoutMs: this.opts.callTimeoutMs ?? 5000,
            metadata: { 'containerd-namespace-ttrpc': this.opts.namespace },
            signal: this.abort.signal,
          },
        );
        return true;
      } catch (e) {
        const code = e instanceof TtrpcError ? e.grpcCode : undefined;
        const err = (e as Error).message;
        if (this.abort.signal.aborted || (code !== undefined && PERMANENT.has(code))) {
          this.log.error({ ...where, err, grpcCode: code }, 'event dropped');
          return false;
        }
        if (attempt >= retries) {
          this.log.error({ ...where, err, attempts: attempt + 1 }, 'event dropped after retries');
          return false;
        }
        this.log.warn({ ...where, err, attempt: attempt + 1 }, 'event not delivered, retrying');
        try {
          await sleep((attempt + 1) * (this.opts.retryDelayMs ?? 1000), undefined, { signal: this.abort.signal });
        } catch {
          // aborted by close(): the next round drops the event
        }
      }
    }
  }

  /** The connection to containerd, made on first use and again after it closed. */
  private async connection(): Promise<TtrpcClient> {
    const current = await this.client?.catch(() => undefined);
    if (current && !current.closed) return current;
    this.client = TtrpcClient.connect(this.opts.address, { logger: this.opts.logger, timeoutMs: this.opts.callTimeoutMs ?? 5000 });
    return this.client;
  }
}
