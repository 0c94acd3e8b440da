"""DNS question names parsed from hand-built wire bytes, and through the decoder."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from netae.capture.dns import UNREADABLE, UNREADABLE_HASH, dns_questions
from tests.capture.shared import EVAL
from tests.reference.dns_numpy import dns_questions_numpy

HEADER = bytes.fromhex("abcd 0100 0001 0000 0000 0000")  # id, RD, one question


def wire(name: str) -> bytes:
    return b"".join(bytes([len(lab)]) + lab.encode() for lab in name.split(".")) + b"\0"


def parse(messages: list[bytes], cut: list[int] | None = None):
    starts = np.cumsum([0] + [len(m) for m in messages[:-1]]).astype(np.int64)
    ends = starts + np.array([len(m) if c is None else c for m, c in zip(messages, cut or [None] * len(messages),
                                                                            strict=True)], np.int64)  # fmt: skip
    buf = np.frombuffer(b"".join(messages), np.uint8)
    return dns_questions(buf, starts, ends)


def entropy(text: str) -> float:
    _, counts = np.unique(list(text), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_lengths_entropy_and_parent_hash():
    names = ["3f9a1c0b2d.edge.cdn-example.net", "mfrggzdfmztwq2lknnwg23tp.t.cloud-sync-example.com",
             "abc.t.cloud-sync-example.com", "www.ev.lab"]  # fmt: skip
    msgs = [HEADER + wire(n) + struct.pack(">HH", 1, 1) for n in names]
    q = parse(msgs)
    assert q.qname_len.tolist() == [len(n) for n in names]
    assert q.label_len.tolist() == [len(n.split(".")[0]) for n in names]
    for got, n in zip(q.label_entropy.tolist(), names, strict=True):
        assert got == pytest.approx(entropy(n.split(".")[0]), abs=1e-5)
    assert q.parent_hash[1] == q.parent_hash[2]  # same parent, labels of other lengths
    assert q.parent_hash[0] != q.parent_hash[1] and q.name_hash[1] != q.name_hash[2]
    assert np.all(q.name_hash != 0) and np.all(q.parent_hash != 0)


def test_case_does_not_matter():
    q = parse([HEADER + wire("AbC.Example.COM"), HEADER + wire("abc.example.com")])
    assert q.name_hash[0] == q.name_hash[1] and q.parent_hash[0] == q.parent_hash[1]


@pytest.mark.parametrize(
    ("message", "cut"),
    [
        (bytes.fromhex("abcd 0100 0000 0000 0000 0000") + wire("abc.example.com"), None),  # no question
        (HEADER[:8], None),  # shorter than a header
        (HEADER + b"\0", None),  # the root name: no labels
    ],
)
def test_messages_without_a_name_give_zeros(message, cut):
    q = parse([message, HEADER + wire("ok.example.com")], cut=[cut, None])
    assert q.qname_len[0] == 0 and q.name_hash[0] == 0 and q.label_entropy[0] == 0
    assert q.qname_len[1] == len("ok.example.com")


@pytest.mark.parametrize(
    ("message", "cut"),
    [
        (HEADER + wire("abcdefgh.example.com"), 12 + 10),  # cut by the snap length inside the name
        (HEADER + b"\x03abc\xc0\x0c", None),  # compression pointer in the question
        (HEADER + b"\x03abc\x41", None),  # reserved label type
        (HEADER + wire(".".join(["abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq"] * 5)), None),  # > 255 bytes
    ],
)
def test_unreadable_names_are_a_value_of_their_own(message, cut):
    """Never "no name" (zeros): longer than any readable name, with their own hash."""
    q = parse([message, HEADER + wire("ok.example.com")], cut=[cut, None])
    assert q.qname_len[0] == UNREADABLE and q.label_len[0] == UNREADABLE
    assert q.name_hash[0] == q.parent_hash[0] == UNREADABLE_HASH
    assert q.qname_len[1] == len("ok.example.com")


def test_forty_one_byte_labels_parse_like_the_unsplit_name():
    """A DNS tunnel name split into 40 one-byte labels (issue 21) is read, not unreadable."""
    payload = "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dz"
    split = ".".join(payload) + ".t.example.com"  # 40 one-byte labels, then the parent
    whole = payload + ".t.example.com"
    assert len(payload) == 40
    q = parse([HEADER + wire(split), HEADER + wire(whole)])
    assert q.qname_len.tolist() == [len(split), len(whole)]
    assert q.label_len.tolist() == [1, 40]
    assert q.qname_len[0] != UNREADABLE and q.name_hash[0] not in (0, UNREADABLE_HASH)
    ref = dns_questions_numpy(np.frombuffer(HEADER + wire(split), np.uint8), np.zeros(1, np.int64),
                              np.array([12 + len(wire(split))], np.int64))  # fmt: skip
    assert ref.qname_len[0] == len(split) and ref.name_hash[0] == q.name_hash[0]


def test_longest_readable_name_is_253_characters():
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 255 bytes in wire form
    assert len(wire(name)) == 255
    q = parse([HEADER + wire(name), HEADER + wire(name + "e")])
    assert q.qname_len.tolist() == [253, UNREADABLE]


def test_decoder_fills_dns_columns_for_udp_53_only():
    from netae.capture.decode import decode_records
    from netae.tables import RecordBatch

    def frame(sport: int, dport: int, payload: bytes, proto: int = 17) -> bytes:
        udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, proto, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 53]))  # fmt: skip
        return bytes(12) + b"\x08\x00" + ip + udp

    query = HEADER + wire("xyz.t.example.com") + struct.pack(">HH", 1, 1)
    frames = [frame(40000, 53, query), frame(53, 40000, query), frame(40000, 5353, query)]
    data = b"".join(frames) + bytes(128)
    offsets = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    lens = np.array([len(f) for f in frames], np.uint32)
    batch = RecordBatch(np.frombuffer(data, np.uint8), offsets, lens, lens, np.zeros(3, np.int64),
                        np.ones(3, np.uint16))  # fmt: skip
    p = decode_records(batch)
    assert p.dns_qname_len.tolist() == [17, 17, 0]
    assert p.dns_label_len.tolist() == [3, 3, 0]
    assert p.dns_label_entropy[0] == pytest.approx(math.log2(3))


def test_compiled_and_numpy_dns_parsers_agree():
    """Random and real DNS payloads: the kernel and the numpy path give identical columns."""

    from netae.capture import dns as dns_mod
    from netae.capture import read_records

    assert hasattr(dns_mod, "dns_questions")

    rng = np.random.default_rng(0)
    bufs = [rng.integers(0, 256, 20_000, dtype=np.uint8)]
    # Mostly well-formed names: random labels of random lengths.
    parts = []
    for _ in range(300):
        labels = [bytes(rng.choice(list(b"abcdefghijklmnopqrstuvwxyzABC0123-"), int(rng.integers(1, 30))).tolist())
                  for _ in range(int(rng.integers(1, 6)))]  # fmt: skip
        parts.append(bytes(4) + b"\x00\x01" + bytes(6) + b"".join(bytes([len(x)]) + x for x in labels) + b"\x00")
    well_formed = np.frombuffer(b"".join(parts), np.uint8)
    bounds = np.cumsum([0] + [len(x) for x in parts]).astype(np.int64)
    a = dns_mod.dns_questions(well_formed, bounds[:-1], bounds[1:])
    b = dns_questions_numpy(well_formed, bounds[:-1], bounds[1:])
    assert np.all(a.qname_len > 0)
    for name in ("qname_len", "label_len", "name_hash", "parent_hash"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.label_entropy, b.label_entropy, rtol=1e-5, atol=1e-6)
    bufs.append(well_formed)
    path = EVAL / "hard" / "dev_mixed.pcap"
    if path.exists():
        bufs.append(next(iter(read_records(path))).data)
    for buf in bufs:
        start = np.sort(rng.integers(0, len(buf), 3000)).astype(np.int64)
        end = np.minimum(start + rng.integers(0, 400, 3000), len(buf)).astype(np.int64)
        a = dns_mod.dns_questions(buf, start, end)
        b = dns_questions_numpy(buf, start, end)
        for name in ("qname_len", "label_len", "name_hash", "parent_hash"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_allclose(a.label_entropy, b.label_entropy, rtol=1e-5, atol=1e-6)
