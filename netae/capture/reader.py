"""Read pcap and pcapng captures (plain or compressed) in bounded chunks of records.

The format comes from the magic number only, never from the file name. Bytes are hostile:
every length is checked before use, and the only exceptions that leave this module are
``CaptureError`` subclasses (and ``InputError`` for a path that cannot be opened).

NOTE [damage]: a header that cannot be read (empty file, bad magic, unsupported version, a
file header cut short) raises ``NotACapture``. Damage after the header (a file cut short, an
absurd record length, a corrupt pcapng block, a broken compressed stream) ends the capture: the
records before it are decoded and yielded, ``counts.truncated`` is set and one warning names the
record number and byte offset (offsets count decompressed bytes for compressed files).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import lzma
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from netae.capture import _walk
from netae.capture.decode import PAD_BYTES, decode_records
from netae.capture.skips import Skip, add_skip
from netae.config import TunnelSettings
from netae.errors import InputError, NotACapture
from netae.tables import PacketTable, RecordBatch, SkipCounts

__all__ = ["MAX_CAPLEN", "MIN_MAX_CAPLEN", "TS_MAX_NS", "TS_MIN_NS", "read_packets", "read_records"]

log = logging.getLogger(__name__)

MIN_MAX_CAPLEN = 256 << 10  # a record longer than this is absurd unless the snap length says more
MAX_CAPLEN = 16 << 20  # never longer than this, whatever the header says
TS_MIN_NS = -(1 << 61)  # record times outside [TS_MIN_NS, TS_MAX_NS) are skipped (NOTE [time range])
TS_MAX_NS = 1 << 62  # about the year 2116; classic pcap times (32-bit seconds) always fit
_MAX_TSOFFSET_S = 1 << 33

_PCAP_MAGICS: dict[bytes, tuple[bool, int, int]] = {
    # magic bytes -> (big-endian, ns per fraction unit, record header length)
    b"\xd4\xc3\xb2\xa1": (False, 1000, 16),
    b"\xa1\xb2\xc3\xd4": (True, 1000, 16),
    b"\x4d\x3c\xb2\xa1": (False, 1, 16),
    b"\xa1\xb2\x3c\x4d": (True, 1, 16),
    b"\x34\xcd\xb2\xa1": (False, 1000, 24),  # Alexey Kuznetzov's modified pcap
    b"\xa1\xb2\xcd\x34": (True, 1000, 24),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D

_OTHER_TYPES: tuple[tuple[bytes, str], ...] = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (zstd -d)"),
    (b"PK\x03\x04", "a zip archive; extract the capture first"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"SQLite format", "an SQLite database"),
    (b"\x89PNG", "a PNG image"),
    (b"XCP\x00", "a Network Instruments Observer capture, not pcap/pcapng (convert it with editcap)"),
    (b"\x00\x00\x00\x00", "not a pcap or pcapng capture (starts with zero bytes)"),
)


@dataclass(slots=True)
class _Iface:
    linktype: int
    snaplen: int
    tsresol_binary: bool = False
    tsresol_exp: int = 6
    tsoffset_s: int = 0


class _Damage(OSError):
    """The byte stream itself broke (decompression error, I/O error) after the header."""


class _Prefixed(io.RawIOBase):
    """A readable stream that first serves ``prefix`` (bytes already peeked), then ``inner``."""

    def __init__(self, prefix: bytes, inner: Any) -> None:
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class _Stream:
    """Full reads from a file object; stream errors become ``_Damage``."""

    def __init__(self, f: Any, prefix: bytes = b"", *, compressed: bool = False) -> None:
        self._f = f
        self._prefix = prefix
        self._readinto = getattr(f, "readinto", None)
        self._piece = 8 << 20
        if compressed:
            # read1 makes one decompressor call: when the stream breaks, only that call's output
            # is lost, not a whole buffered read.
            self._readinto, self._piece = None, 64 << 10
        self._read: Any = getattr(f, "read1", None) if compressed else f.read

    def unread(self, data: bytes) -> None:
        self._prefix = data + self._prefix

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        return bytes(buf[:got])

    def read_some(self, mv: memoryview) -> int:
        """Whatever one read returns (live input: what has arrived, at least one byte); 0 at the end."""
        if self._prefix:
            k = min(len(self._prefix), len(mv))
            mv[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        try:
            read1 = getattr(self._f, "read1", None)
            if read1 is None:
                return int(self._f.readinto(mv) or 0)
            data = read1(len(mv))
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
            raise _Damage(f"{type(exc).__name__}: {exc}", 0) from exc
        mv[: len(data)] = data
        return len(data)

    def readinto(self, mv: memoryview) -> int:
        got = 0
        if self._prefix:
            k = min(len(self._prefix), len(mv))
            mv[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            got = k
        while got < len(mv):
            try:
                if self._readinto is not None:
                    k = self._readinto(mv[got : got + self._piece])
                else:
                    data = self._read(min(len(mv) - got, self._piece))
                    k = len(data)
                    mv[got : got + k] = data
            except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
                raise _Damage(f"{type(exc).__name__}: {exc}", got) from exc
            if not k:
                break
            got += k
        return got


def _open(source: str | os.PathLike[str] | BinaryIO) -> tuple[str, Any, bool]:
    if isinstance(source, str) and source == "-":
        return "<stdin>", sys.stdin.buffer, False
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            return name, open(name, "rb"), True  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"{name}: cannot open: {exc.strerror or exc}") from exc
    return str(getattr(source, "name", "<stream>")), source, False


def _decompressed(name: str, stream: _Stream) -> tuple[_Stream, str]:
    """Peel off gzip, bzip2 or xz compression, found by magic number; ``""`` when not compressed."""
    try:
        head = stream.read(6)
    except _Damage as exc:
        raise NotACapture(f"{name}: cannot read the file header ({exc.args[0]})") from exc
    if not head:
        raise NotACapture(f"{name}: empty file (zero bytes), not a capture")
    opener: Any = None
    kind = ""
    if head[:2] == b"\x1f\x8b":
        opener, kind = gzip.GzipFile, "gzip"
    elif head[:3] == b"BZh":
        opener, kind = bz2.BZ2File, "bzip2"
    elif head[:6] == b"\xfd7zXZ\x00":
        opener, kind = lzma.LZMAFile, "xz"
    if opener is None:
        stream.unread(head)
        return stream, ""
    raw = _Prefixed(head, stream)
    inner = opener(raw, "rb") if kind != "gzip" else gzip.GzipFile(fileobj=raw, mode="rb")
    return _Stream(inner, compressed=True), kind


def read_packets(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    file_id: int = 0,
    chunk_bytes: int = 32 << 20,
    counts: SkipCounts | None = None,
    tunnels: TunnelSettings | None = None,
    live: bool = False,
) -> Iterator[PacketTable]:
    """Decoded IP packets of one capture, one PacketTable per chunk of about ``chunk_bytes``.

    ``source`` is a path, ``"-"`` for stdin, or a binary file object (read sequentially, never
    seeked). ``counts`` receives records read, packets produced, skips by reason, warnings and
    the truncated flag (NOTE [damage]). ``tunnels`` says which tunnels are opened (defaults when
    None; NOTE [decapsulation] in decode.py). Empty tables are not yielded. ``live``: yield the
    whole records of every read as soon as it returns, however few (at most ``chunk_bytes``).
    """
    for batch in read_records(source, chunk_bytes=chunk_bytes, counts=counts, live=live):
        table = decode_records(batch, file_id=file_id, counts=counts, tunnels=tunnels)
        if table.n_packets:
            yield table


def read_records(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    chunk_bytes: int = 32 << 20,
    counts: SkipCounts | None = None,
    live: bool = False,
) -> Iterator[RecordBatch]:
    """Raw records of one capture in batches whose buffers hold about ``chunk_bytes`` of records.

    Each batch's ``data`` ends with ``PAD_BYTES`` zero bytes (NOTE [captured bytes] in decode.py).
    Records are not counted here: ``decode_records`` counts them.
    """
    name, f, close = _open(source)
    state = SkipCounts() if counts is None else counts
    log_level = logging.WARNING if counts is None else logging.DEBUG  # else the caller reports them
    try:
        stream, kind = _decompressed(name, _Stream(f))
        label = f"{name} ({kind}-compressed)" if kind else name
        try:
            magic = stream.read(4)
        except _Damage as exc:
            raise NotACapture(f"{label}: damaged {kind} stream at the start ({exc.args[0]})") from exc
        if len(magic) < 4:
            raise NotACapture(f"{label}: {len(magic)} bytes, too short for a capture file header")
        reader: _PcapReader | _PcapngReader
        if magic in _PCAP_MAGICS:
            reader = _PcapReader(label, stream, magic, max(int(chunk_bytes), 1 << 10), state, log_level)
        elif magic == _PCAPNG_MAGIC:
            reader = _PcapngReader(label, stream, magic, max(int(chunk_bytes), 1 << 10), state, log_level)
        else:
            raise NotACapture(f"{label}: {_describe_magic(magic)}")
        reader.live = live
        yield from reader.batches()
    finally:
        if close:
            with contextlib.suppress(OSError):
                f.close()


def _describe_magic(magic: bytes) -> str:
    for prefix, what in _OTHER_TYPES:
        if magic.startswith(prefix[:4]):
            return what
    if all(32 <= c < 127 or c in (9, 10, 13) for c in magic):
        return f"not a pcap or pcapng capture (starts with text {magic.decode('ascii')!r})"
    return f"not a pcap or pcapng capture (bad magic number 0x{magic.hex()})"


class _ChunkReader:
    """The chunk loop shared by both formats: leftover bytes of a partial record carry over."""

    def __init__(self, name: str, stream: _Stream, chunk_bytes: int, counts: SkipCounts, log_level: int) -> None:
        self.log_level = log_level
        self.name = name
        self.stream = stream
        self.chunk_bytes = chunk_bytes
        self.counts = counts
        self.n_records = 0  # records walked so far, for messages
        self.base = 0  # file offset (decompressed) of the current buffer's first byte

    def damage(self, message: str) -> None:
        self.counts.truncated = True
        full = f"{self.name}: {message}; using the {self.n_records} records before it"
        if full not in (self.counts.warnings or []):
            self.counts.warn(full)
        log.log(self.log_level, "%s", full)

    def buffers(self, first_offset: int) -> Iterator[tuple[npt.NDArray[np.uint8], int, bool, str]]:
        """Yield (buffer, n_valid_bytes, eof, stream_error); the consumer sets ``self.pos``/``self.need``."""
        leftover = np.empty(0, np.uint8)
        self.base = first_offset
        want = self.chunk_bytes
        while True:
            buf = np.empty(len(leftover) + want + PAD_BYTES, np.uint8)
            buf[: len(leftover)] = leftover
            error = ""
            target = buf.data[len(leftover) : len(leftover) + want]
            try:
                got = self.stream.read_some(target) if self.live else self.stream.readinto(target)
            except _Damage as exc:
                got = exc.args[1]
                error = exc.args[0]
            total = len(leftover) + got
            buf = buf[: total + PAD_BYTES]  # a short last read: drop the untouched tail
            buf[total:] = 0
            eof = bool(error) or (got == 0 if self.live else got < want)
            self.pos = 0
            self.need = 0
            yield buf, total, eof, error
            if self.stop:
                return
            rest = total - self.pos
            if eof:
                offset = self.base + self.pos
                if error:
                    self.damage(f"compressed stream broken after byte {self.base + total} ({error})")
                elif rest:
                    self.damage(
                        f"cut short in record {self.n_records + 1} at byte {offset}: "
                        f"it needs {self.need} bytes, the file has {rest} left"
                    )
                return
            leftover = buf[self.pos : total].copy()
            self.base += self.pos
            want = max(self.chunk_bytes, self.need - rest)

    stop = False
    pos = 0
    need = 0
    live = False  # hand on whatever has arrived (a pipe from tcpdump -U), not only full chunks


def _alloc(n: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty(n, np.int64),
        np.empty(n, np.uint32),
        np.empty(n, np.uint32),
        np.empty(n, np.uint32),
        np.empty(n, np.uint32),
        np.empty(n, np.int32),
    )


def _batch(
    buf: npt.NDArray[np.uint8],
    off: npt.NDArray[np.int64],
    cap: npt.NDArray[np.uint32],
    orig: npt.NDArray[np.uint32],
    ts_ns: npt.NDArray[np.int64],
    linktype: npt.NDArray[np.uint16],
) -> RecordBatch:
    orig = np.maximum(orig, cap)  # RecordBatch: origlen is never less than caplen
    return RecordBatch(data=buf, offsets=off, caplen=cap, origlen=orig, ts_ns=ts_ns, linktype=linktype)


class _PcapReader(_ChunkReader):
    def __init__(
        self, name: str, stream: _Stream, magic: bytes, chunk_bytes: int, counts: SkipCounts, log_level: int
    ) -> None:
        super().__init__(name, stream, chunk_bytes, counts, log_level)
        self.big, self.frac_ns, self.rec_hdr = _PCAP_MAGICS[magic]
        try:
            rest = stream.read(20)
        except _Damage as exc:
            raise NotACapture(f"{name}: cannot read the pcap file header ({exc.args[0]})") from exc
        if len(rest) < 20:
            raise NotACapture(f"{name}: pcap file header cut short ({4 + len(rest)} of 24 bytes)")
        major, minor, _zone, _sigfigs, snaplen, network = struct.unpack((">" if self.big else "<") + "HHiIII", rest)
        if major != 2:
            raise NotACapture(f"{name}: unsupported pcap version {major}.{minor} (only 2.x exists)")
        self.linktype = network & 0xFFFF
        self.max_caplen = min(max(MIN_MAX_CAPLEN, snaplen), MAX_CAPLEN)

    def batches(self) -> Iterator[RecordBatch]:
        walk = _walk.walk_pcap
        for buf, total, _eof, _error in self.buffers(24):
            o_off, o_cap, o_orig, o_hi, o_lo, _ = _alloc(total // 16 + 1)
            k, pos, status, need = walk(
                buf, 0, total, self.big, self.rec_hdr, self.max_caplen, o_off, o_cap, o_orig, o_hi, o_lo
            )
            k, pos, status, need = int(k), int(pos), int(status), int(need)
            self.pos, self.need = pos, need
            if k:
                ts_ns = o_hi[:k].astype(np.int64) * 1_000_000_000 + o_lo[:k].astype(np.int64) * self.frac_ns
                linktype = np.full(k, self.linktype, np.uint16)
                yield _batch(buf, o_off[:k], o_cap[:k], o_orig[:k], ts_ns, linktype)
            self.n_records += k
            if status == _walk.BAD:
                self.damage(
                    f"record {self.n_records + 1} at byte {self.base + pos} claims {need} captured bytes "
                    f"(more than the maximum of {self.max_caplen})"
                )
                self.stop = True


def _ts_ns(hi: np.ndarray, lo: np.ndarray, iface: _Iface) -> npt.NDArray[np.int64]:
    """pcapng 64-bit timestamps in the interface's units to int64 ns (wrapping, never raising)."""
    raw = (hi.astype(np.uint64) << np.uint64(32)) | lo.astype(np.uint64)
    e = iface.tsresol_exp
    if iface.tsresol_binary:
        if e >= 64:
            ns = np.zeros(len(raw), np.uint64)
        else:
            whole = raw >> np.uint64(e)
            frac = (raw & np.uint64((1 << e) - 1)).astype(np.float64) * (1e9 / float(1 << e))
            ns = whole * np.uint64(1_000_000_000) + frac.astype(np.uint64)
    elif e <= 9:
        ns = raw * np.uint64(10 ** (9 - e))
    elif e - 9 <= 19:
        ns = raw // np.uint64(10 ** (e - 9))
    else:
        ns = np.zeros(len(raw), np.uint64)
    out: npt.NDArray[np.int64] = ns.view(np.int64) + np.int64(iface.tsoffset_s) * np.int64(1_000_000_000)
    return out


class _PcapngReader(_ChunkReader):
    def __init__(
        self, name: str, stream: _Stream, magic: bytes, chunk_bytes: int, counts: SkipCounts, log_level: int
    ) -> None:
        super().__init__(name, stream, chunk_bytes, counts, log_level)
        stream.unread(magic)
        self.big = False
        self.ifaces: list[_Iface] = []
        self.n_sections = 0
        self.last_ts = 0

    def _section(self, buf: npt.NDArray[np.uint8], pos: int, total: int) -> int:
        """Parse the section header at ``pos``; return its length, 0 if incomplete, -1 if corrupt."""
        if pos + 12 > total:
            self.need = 12
            return 0
        bom = bytes(buf[pos + 8 : pos + 12])
        if bom == _BOM.to_bytes(4, "little"):
            big = False
        elif bom == _BOM.to_bytes(4, "big"):
            big = True
        else:
            return self._bad_header("section header with a bad byte-order magic", pos)
        blen = int.from_bytes(bytes(buf[pos + 4 : pos + 8]), "big" if big else "little")
        if blen < 28 or blen % 4 or blen > _walk.MAX_BLOCK:
            return self._bad_header(f"section header with a bad length {blen}", pos)
        if pos + blen > total:
            self.need = blen
            return 0
        major, minor = struct.unpack_from((">" if big else "<") + "HH", buf.data, pos + 12)
        if major != 1:
            return self._bad_header(f"unsupported pcapng version {major}.{minor}", pos)
        self.big = big
        self.ifaces = []
        self.n_sections += 1
        return blen

    def damage(self, message: str) -> None:
        if self.n_sections == 0:  # the file header itself is unreadable (NOTE [damage])
            raise NotACapture(f"{self.name}: pcapng section header unreadable: {message}")
        super().damage(message)

    def _bad_header(self, what: str, pos: int) -> int:
        if self.n_sections == 0:
            raise NotACapture(f"{self.name}: {what}")
        self.damage(f"{what} at byte {self.base + pos}")
        return -1

    def _interface(self, buf: npt.NDArray[np.uint8], pos: int) -> int:
        bo = ">" if self.big else "<"
        blen, linktype, _res, snaplen = struct.unpack_from(bo + "IHHI", buf.data, pos + 4)
        if blen < 20:
            self.damage(f"interface block with a bad length {blen} at byte {self.base + pos}")
            return -1
        iface = _Iface(linktype=linktype, snaplen=snaplen)
        p, stop = pos + 16, pos + blen - 4
        while p + 4 <= stop:
            code, length = struct.unpack_from(bo + "HH", buf.data, p)
            if code == 0 or p + 4 + length > stop:
                break
            if code == 9 and length >= 1:  # if_tsresol
                v = int(buf[p + 4])
                iface.tsresol_binary, iface.tsresol_exp = bool(v & 0x80), v & 0x7F
            elif code == 14 and length >= 8:  # if_tsoffset, seconds
                offset = struct.unpack_from(bo + "q", buf.data, p + 4)[0]
                iface.tsoffset_s = max(-_MAX_TSOFFSET_S, min(_MAX_TSOFFSET_S, offset))  # NOTE [time range]
            p += 4 + (length + 3) // 4 * 4
        self.ifaces.append(iface)
        return int(blen)

    def batches(self) -> Iterator[RecordBatch]:
        walk = _walk.walk_pcapng
        for buf, total, _eof, _error in self.buffers(0):
            outs = _alloc(total // 16 + 1)
            o_off, o_cap, o_orig, o_hi, o_lo, o_if = outs
            ts_ns = np.empty(len(o_off), np.int64)
            linktype = np.empty(len(o_off), np.uint16)
            keep = np.ones(len(o_off), np.bool_)
            k = pos = 0
            while True:
                snap0 = self.ifaces[0].snaplen if self.ifaces else 0
                max_caplen = min(max([MIN_MAX_CAPLEN] + [i.snaplen for i in self.ifaces]), MAX_CAPLEN)
                k1, pos1, status, need = walk(
                    buf, pos, total, self.big, max_caplen, snap0, k, o_off, o_cap, o_orig, o_hi, o_lo, o_if
                )
                k1, pos1, status, need = int(k1), int(pos1), int(status), int(need)
                self._finish_segment(k, k1, o_hi, o_lo, o_if, ts_ns, linktype, keep)
                self.n_records += k1 - k
                k, pos = k1, pos1
                self.pos, self.need = pos, need
                if status == _walk.NEED:
                    break
                if status == _walk.BAD:
                    self.damage(f"corrupt pcapng block (length {need}) at byte {self.base + pos}")
                    self.stop = True
                    break
                btype = int.from_bytes(bytes(buf[pos : pos + 4]), "big" if self.big else "little")
                used = self._section(buf, pos, total) if btype == 0x0A0D0D0A else self._interface(buf, pos)
                if used < 0:
                    self.stop = True
                    break
                if used == 0:
                    self.pos = pos
                    break
                pos += used
                self.pos = pos
            if k:
                sel = np.flatnonzero(keep[:k])
                if len(sel):
                    yield _batch(buf, o_off[sel], o_cap[sel], o_orig[sel], ts_ns[sel], linktype[sel])

    def _finish_segment(
        self,
        k0: int,
        k1: int,
        o_hi: np.ndarray,
        o_lo: np.ndarray,
        o_if: np.ndarray,
        ts_ns: np.ndarray,
        linktype: np.ndarray,
        keep: np.ndarray,
    ) -> None:
        """Timestamps and link types of records ``k0:k1``, walked under the current interfaces."""
        if k1 <= k0:
            return
        if_id = o_if[k0:k1].astype(np.int64)
        spb = if_id < 0
        if_id = np.where(spb, 0, if_id)
        n_if = len(self.ifaces)
        ok = if_id < n_if
        keep[k0:k1] = ok
        seg_ts = np.zeros(k1 - k0, np.int64)
        seg_lt = np.zeros(k1 - k0, np.uint16)
        for i in np.unique(if_id[ok]).tolist():
            rows = np.flatnonzero(if_id == i)
            iface = self.ifaces[i]
            seg_ts[rows] = _ts_ns(o_hi[k0:k1][rows], o_lo[k0:k1][rows], iface)
            seg_lt[rows] = iface.linktype
        if spb.any():  # no timestamp in a Simple Packet Block: carry the last one forward
            has = ~spb
            idx = np.where(has, np.arange(k1 - k0), -1)
            np.maximum.accumulate(idx, out=idx)
            seg_ts = np.where(idx >= 0, seg_ts[np.maximum(idx, 0)], self.last_ts)
        if ok.any():
            self.last_ts = int(seg_ts[ok][-1])
        ts_ns[k0:k1] = seg_ts
        linktype[k0:k1] = seg_lt
        add_skip(self.counts, Skip.PCAPNG_IFACE, int((~ok).sum()))
        # NOTE [time range]: later stages subtract and add timestamps in int64; records outside
        # the range (a wrapped 64-bit pcapng timestamp, an absurd if_tsoffset) are skipped.
        out_of_range = ok & ((seg_ts < TS_MIN_NS) | (seg_ts >= TS_MAX_NS))
        if out_of_range.any():
            add_skip(self.counts, Skip.TIME_RANGE, int(out_of_range.sum()))
            keep[k0:k1] = ok & ~out_of_range
