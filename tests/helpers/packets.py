"""Build PacketTables by hand for tests: one dict per packet, defaults for the rest."""

from __future__ import annotations

from typing import Any

import numpy as np

from netae.tables import PacketTable, parse_ip

_DEFAULTS: dict[str, Any] = {
    "ts": 0.0,
    "src": "10.0.0.1",
    "dst": "10.0.0.2",
    "sport": 40000,
    "dport": 80,
    "proto": 6,
    "ip_len": 60,
    "payload": 0,
    "flags": 0x10,
    "window": 64240,
    "icmp_type": 0,
    "icmp_code": 0,
    "ttl": 64,
    "ip_id": 0,
    "frag_offset": 0,
    "mf": False,
    "file_id": 0,
    "qname": "",
}


def _dns_columns(names: list[str]) -> dict[str, np.ndarray]:
    """The dns_* columns for question names given as text ('' = none), via the real parser."""
    from netae.capture.dns import dns_questions

    wires = []
    for name in names:
        wire = b"".join(bytes([len(lab)]) + lab.encode() for lab in name.split(".")) + b"\0" if name else b""
        wires.append(b"\0\1\1\0\0\1\0\0\0\0\0\0" + wire if name else b"")
    starts = np.cumsum([0] + [len(w) for w in wires])[: len(wires)].astype(np.int64)
    buf = np.frombuffer(b"".join(wires) + bytes(300), np.uint8)
    ends = starts + np.array([len(w) for w in wires], np.int64)
    q = dns_questions(buf, starts, ends)
    return {
        "dns_qname_len": q.qname_len,
        "dns_label_len": q.label_len,
        "dns_label_entropy": q.label_entropy,
        "dns_name_hash": q.name_hash,
        "dns_parent_hash": q.parent_hash,
    }


def make_packets(rows: list[dict[str, Any]]) -> PacketTable:
    """A PacketTable from per-packet dicts (keys of _DEFAULTS); ts in seconds; ``qname`` is a
    DNS question name in text form (parsed as the decoder would)."""
    full = [{**_DEFAULTS, **r} for r in rows]
    src = [parse_ip(r["src"]) for r in full]
    dst = [parse_ip(r["dst"]) for r in full]
    is_icmp = [r["proto"] in (1, 58) for r in full]
    return PacketTable(
        ts_ns=np.array([round(r["ts"] * 1e9) for r in full], dtype=np.int64),
        src_hi=np.array([s[0] for s in src], dtype=np.uint64),
        src_lo=np.array([s[1] for s in src], dtype=np.uint64),
        dst_hi=np.array([d[0] for d in dst], dtype=np.uint64),
        dst_lo=np.array([d[1] for d in dst], dtype=np.uint64),
        src_port=np.array(
            [r["icmp_type"] if i else r["sport"] for r, i in zip(full, is_icmp, strict=True)], dtype=np.uint16
        ),
        dst_port=np.array(
            [r["icmp_code"] if i else r["dport"] for r, i in zip(full, is_icmp, strict=True)], dtype=np.uint16
        ),
        proto=np.array([r["proto"] for r in full], dtype=np.uint8),
        ip_version=np.array([4 if ":" not in r["src"] else 6 for r in full], dtype=np.uint8),
        ip_len=np.array([r["ip_len"] for r in full], dtype=np.uint32),
        payload_len=np.array([r["payload"] for r in full], dtype=np.uint32),
        tcp_flags=np.array([r["flags"] if r["proto"] == 6 else 0 for r in full], dtype=np.uint8),
        tcp_window=np.array([r["window"] if r["proto"] == 6 else 0 for r in full], dtype=np.uint16),
        icmp_type=np.array([r["icmp_type"] for r in full], dtype=np.uint8),
        icmp_code=np.array([r["icmp_code"] for r in full], dtype=np.uint8),
        ttl=np.array([r["ttl"] for r in full], dtype=np.uint8),
        ip_id=np.array([r["ip_id"] for r in full], dtype=np.uint32),
        frag_offset=np.array([r["frag_offset"] for r in full], dtype=np.uint16),
        more_fragments=np.array([r["mf"] for r in full], dtype=bool),
        has_ports=np.array([r["frag_offset"] == 0 for r in full], dtype=bool),
        file_id=np.array([r["file_id"] for r in full], dtype=np.int32),
        **_dns_columns([r["qname"] for r in full]),
    )


def tcp_session(
    t0: float, *, client: str = "10.0.0.1", server: str = "10.0.0.2", sport: int = 40000, dport: int = 80,
    n_data: int = 3, gap: float = 0.01,
) -> list[dict[str, Any]]:  # fmt: skip
    """A TCP exchange: handshake, request/response pairs, FIN teardown."""
    c = {"src": client, "dst": server, "sport": sport, "dport": dport}
    s = {"src": server, "dst": client, "sport": dport, "dport": sport}
    rows = [
        {**c, "flags": 0x02, "ip_len": 60},
        {**s, "flags": 0x12, "ip_len": 60},
        {**c, "flags": 0x10, "ip_len": 52},
    ]
    for i in range(n_data):
        rows.append({**c, "flags": 0x18, "ip_len": 152 + i, "payload": 100 + i})
        rows.append({**s, "flags": 0x18, "ip_len": 1052 + i, "payload": 1000 + i})
    rows += [{**c, "flags": 0x11, "ip_len": 52}, {**s, "flags": 0x11, "ip_len": 52}, {**c, "flags": 0x10, "ip_len": 52}]
    for i, r in enumerate(rows):
        r["ts"] = t0 + i * gap
    return rows
