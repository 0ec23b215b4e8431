#!/usr/bin/python3
"""Stand-in slot filler (HA_AGENT=serf-runtime), for checking the container plumbing when the
haserf agent is not available. A stock serf event handler: on every member event, it reads
`serf members` and `show stat` and fills/drains `web` slots through the runtime API (no reload).
Not the product: haserf does this with stable assignment, verification and drain deadlines."""
import csv, io, json, socket, subprocess, sys

SOCK = "/run/haproxy/admin.sock"
BACKEND = "web"

def cli(line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCK)
    s.sendall(line.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    return out.decode()

def main():
    sys.stdin.read()
    members = json.loads(subprocess.run(
        ["serf", "members", "-rpc-addr=127.0.0.1:7373", "-format=json"],
        capture_output=True, check=True).stdout)["members"]
    want = {}
    for m in members:
        if m["status"] == "alive" and m["tags"].get("role") == BACKEND:
            ip = m["addr"].rsplit(":", 1)[0]
            want[ip + ":" + m["tags"].get("port", "80")] = m["name"]
    rows = list(csv.DictReader(io.StringIO(cli("show stat").lstrip("# "))))
    slots = [r for r in rows if r["pxname"] == BACKEND and r["type"] == "2"]
    used = {}
    for r in slots:
        if r["status"] != "MAINT" and r["addr"] in want:
            used[r["addr"]] = r["svname"]
    cmds = []
    for r in slots:
        if r["status"] != "MAINT" and r["addr"] not in want:
            cmds.append(f"set server {BACKEND}/{r['svname']} state maint")
    free = [r["svname"] for r in slots
            if r["status"] == "MAINT" or (r["addr"] not in want)]
    for addr in sorted(set(want) - set(used)):
        if not free:
            break
        name = free.pop(0)
        ip, port = addr.rsplit(":", 1)
        cmds.append(f"set server {BACKEND}/{name} addr {ip} port {port}")
        cmds.append(f"set server {BACKEND}/{name} state ready")
    for c in cmds:
        print(c, "->", cli(c).strip(), file=sys.stderr)

main()
