"""The cluster DNS of the real node (tests/node): A records of Services, nothing else.

    python -m prewarm.devenv.node_dns ADDRESS KUBECTL KUBECONFIG

Listens on ADDRESS:53/udp (inside the node's network namespace; the kubelet's
`clusterDNS`) and answers `<service>.<namespace>.svc.cluster.local` with the
Service's ClusterIP, read from the API server at each query; every other name
is NXDOMAIN. Nothing is forwarded: the namespace has no way out, by design.
It is what lets a pod reach `prewarm-postgresql` by name, as deploy/prewarm.yaml
expects (CoreDNS would need an image and a Deployment for the same answer).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Callable

_SUFFIX = ["svc", "cluster", "local"]
_TYPE_A = 1


def _question(data: bytes) -> tuple[int, int, list[str], int, bytes]:
    """(id, flags, labels, qtype, the question section as sent)."""
    qid, flags = struct.unpack("!2H", data[:4])
    labels: list[str] = []
    i = 12
    while data[i]:
        length = data[i]
        labels.append(data[i + 1 : i + 1 + length].decode("ascii", "replace").lower())
        i += 1 + length
    (qtype,) = struct.unpack("!H", data[i + 1 : i + 3])
    return qid, flags, labels, qtype, data[12 : i + 5]


def answer(data: bytes, lookup: Callable[[str, str], str | None]) -> bytes:
    """The response to one query; `lookup(namespace, name)` gives a ClusterIP or None."""
    qid, flags, labels, qtype, question = _question(data)
    address = None
    if len(labels) == 5 and labels[2:] == _SUFFIX:
        address = lookup(labels[1], labels[0])
    rcode = 0 if address else 3  # NOERROR / NXDOMAIN
    answers = 1 if address and qtype == _TYPE_A else 0
    # QR + AA, the client's RD bit, the rcode; one question, `answers` answers.
    header = struct.pack("!6H", qid, 0x8400 | (flags & 0x0100) | rcode, 1, answers, 0, 0)
    body = question
    if answers and address:
        body += b"\xc0\x0c" + struct.pack("!HHIH", _TYPE_A, 1, 5, 4) + socket.inet_aton(address)
    return header + body


def main(argv: list[str]) -> int:
    address, kubectl, kubeconfig = argv

    def lookup(namespace: str, name: str) -> str | None:
        found = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "get", "service", "-n", namespace, name,
             "-o", "jsonpath={.spec.clusterIP}"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        ip = found.stdout.strip()
        return ip if found.returncode == 0 and ip and ip != "None" else None

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(data, lookup), peer)
        except (IndexError, struct.error, subprocess.SubprocessError):
            continue


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
