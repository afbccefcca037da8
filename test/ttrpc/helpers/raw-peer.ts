import { createConnection, type Socket } from 'node:net';
import { fromBinary } from '@bufbuild/protobuf';
import { encodeHeader, FrameReader } from '../../../ttrpc/frame.js';
import { type Response, ResponseSchema } from '../../../ttrpc/generated/ttrpc/request_pb.js';

/** A connection that writes raw frames and reads Responses by stream id: what a foreign client would send. */
export async function rawPeer(
  path: string,
): Promise<{ send(id: number, type: number, data: Uint8Array): void; answer(id: number): Promise<Response>; socket: Socket }> {
  const socket = createConnection(path);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const got = new Map<number, Response>();
  const waiting = new Map<number, (r: Response) => void>();
  const reader = new FrameReader({
    frame: (f) => {
      const r = fromBinary(ResponseSchema, f.data);
      const w = waiting.get(f.streamId);
      if (w) w(r);
      else got.set(f.streamId, r);
    },
    oversized: () => {},
  });
  socket.on('data', (d: Buffer) => reader.push(d));
  return {
    socket,
    send: (id, type, data) => {
      socket.write(Buffer.concat([encodeHeader({ length: data.length, streamId: id, type, flags: 0 }), data]));
    },
    answer: (id) => {
      const r = got.get(id);
      if (r) return Promise.resolve(r);
      return new Promise((resolve) => waiting.set(id, resolve));
    },
  };
}
