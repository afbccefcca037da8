/** A ttRPC address as containerd writes it ("unix:///run/containerd/s/<hash>", or a bare path) -> the socket path. */
export function socketPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}
