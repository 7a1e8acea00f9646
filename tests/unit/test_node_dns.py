"""The real node's DNS answers Service names and nothing else (prewarm.devenv.node_dns)."""

from __future__ import annotations

import socket
import struct

from prewarm.devenv.node_dns import answer


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!2H", qtype, 1)
    )


def _lookup(namespace: str, name: str) -> str | None:
    return "10.0.0.7" if (namespace, name) == ("prewarm-system", "prewarm-postgresql") else None


def test_a_service_name_gets_its_cluster_ip() -> None:
    response = answer(_query("prewarm-postgresql.prewarm-system.svc.cluster.local"), _lookup)
    qid, flags, qd, an, _ns, _ar = struct.unpack("!6H", response[:12])
    assert (qid, flags & 0x000F, qd, an) == (0x1234, 0, 1, 1)
    assert flags & 0x8000
    assert flags & 0x0100
    assert response.endswith(socket.inet_aton("10.0.0.7"))


def test_other_names_are_nxdomain_and_aaaa_is_empty() -> None:
    for name in ("example.com", "prewarm-postgresql.prewarm-system.svc.cluster.local.example"):
        _qid, flags, _qd, an, _ns, _ar = struct.unpack("!6H", answer(_query(name), _lookup)[:12])
        assert (flags & 0x000F, an) == (3, 0)
    aaaa = answer(_query("prewarm-postgresql.prewarm-system.svc.cluster.local", 28), _lookup)
    _qid, flags, _qd, an, _ns, _ar = struct.unpack("!6H", aaaa[:12])
    assert (flags & 0x000F, an) == (0, 0)
