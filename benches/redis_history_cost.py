#!/usr/bin/env python3
"""Redis-side cost of a room message with history in Redis: runs the
broker's MESSAGE script (read from src/rooms/broker/scripts.rs) N times on a
private redis-server and prints the stream's memory per message and the
script's time per call (INFO commandstats). No edgews process involved:
this is what Redis pays per message, whatever the nodes.

Usage: python3 benches/redis_history_cost.py [N] [DATA_BYTES]
"""
import re
import socket
import subprocess
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
data = int(sys.argv[2]) if len(sys.argv) > 2 else 100
src = open("src/rooms/broker/scripts.rs").read()
script = re.search(r'pub const MESSAGE: &str = r#"(.*?)"#;', src, re.S).group(1)
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
server = subprocess.Popen(
    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    stdout=subprocess.DEVNULL,
)
try:
    time.sleep(0.5)

    def cli(*args, inp=None):
        return subprocess.run(
            ["redis-cli", "-p", str(port)] + list(args), capture_output=True, text=True, input=inp
        ).stdout

    sha = cli("SCRIPT", "LOAD", script).strip()
    pre = (
        '{"type":"message","room":"lobby","from":{"id":"user-1234","name":"User 1234"},'
        '"data":{"text":"' + "x" * data + '"},"ts":1764748800456,"offset":'
    )
    cmd = (
        f"EVALSHA {sha} 3 p:rh:lobby p:rs:lobby p:r:7 abcdef0123456789 '{pre}' '}}' "
        f"'n1|m|5|lobby\\n' {n} 3600000\n"
    )
    cli(inp=cmd * n)
    event = len(pre) + len(str(n)) + len(',"epoch":"abcdef0123456789"}')
    mem = int(cli("MEMORY", "USAGE", "p:rs:lobby", "SAMPLES", "0").strip())
    stats = cli("INFO", "commandstats")
    per_call = re.search(r"cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)", stats).group(1)
    print(f"messages {n}, event ~{event} B")
    print(f"stream memory {mem} B = {mem / n:.0f} B per message")
    print(f"MESSAGE script {per_call} us per call (HINCRBY + XADD + PEXPIRE + PUBLISH)")
finally:
    server.kill()
