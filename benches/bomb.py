# A deflate bomb client (raw socket, no library): benches/bomb.py PORT [COUNT]
# sends COUNT bombs (64 MiB of zeros, compressed) on fresh connections and
# prints how long each took to be answered.
import socket, zlib, os, time, struct, sys
port = int(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
c = zlib.compressobj(1, zlib.DEFLATED, -15)
z = c.compress(bytes(64 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
z = z[:-4]
def frame(payload):
    h = bytes([0xC2])  # FIN + RSV1 + binary
    L = len(payload)
    if L < 126: h += bytes([0x80 | L])
    elif L < 65536: h += bytes([0x80 | 126]) + struct.pack('>H', L)
    else: h += bytes([0x80 | 127]) + struct.pack('>Q', L)
    return h + b'\0\0\0\0' + payload
for i in range(n):
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    buf = b''
    while b'\r\n\r\n' not in buf: buf += s.recv(4096)
    t = time.perf_counter()
    s.sendall(frame(z))
    r = s.recv(4096)
    dt = time.perf_counter() - t
    print(f"bomb {len(z)} B: answer {r[:4].hex()} after {dt*1000:.1f} ms")
    s.close()
