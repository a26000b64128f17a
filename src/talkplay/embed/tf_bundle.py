"""Read a TensorFlow checkpoint (tensor bundle) in plain Python: no tensorflow, no protobuf.

A TF checkpoint ``PREFIX`` is two files:

- ``PREFIX.index``: a LevelDB-style SSTable. Data blocks hold prefix-compressed
  ``key -> value`` entries; an index block maps the last key of each data block to its
  ``BlockHandle``; a 48-byte footer points at the index block. Every block is followed by a
  5-byte trailer (compression type, masked CRC32C). The empty key holds a BundleHeaderProto,
  every other key is a variable name whose value is a BundleEntryProto
  (dtype, shape, shard_id, offset, size, crc32c).
- ``PREFIX.data-00000-of-0000N``: the raw little-endian tensor bytes, addressed by
  (shard_id, offset, size).

Only uncompressed blocks are supported (TF writes bundles without compression); a snappy
block raises a clear error. CRC32C checks (blocks and tensors) are optional because the
pure-Python CRC costs about a second per 10 MB.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
# tensorflow/core/framework/types.proto DataType -> numpy dtype (little-endian).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


class BundleError(ValueError):
    """A checkpoint file that is not a readable TF tensor bundle."""


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C (Castagnoli) of ``data``, as LevelDB and TF compute it (before masking)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Undo LevelDB's CRC masking (rotate right by 15 after subtracting a constant)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into (field number, value) pairs (varint, bytes or fixed ints)."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _read_block(index: bytes, offset: int, size: int, verify: bool) -> bytes:
    """Return the contents of the block at (offset, size), checking its trailer."""
    if offset + size + 5 > len(index):
        raise BundleError(f"block at {offset}+{size} runs past the end of the index file")
    block = index[offset : offset + size]
    compression = index[offset + size]
    if compression != 0:
        raise BundleError(f"block at {offset} is compressed (type {compression}); only raw blocks are supported")
    if verify:
        (masked,) = struct.unpack_from("<I", index, offset + size + 1)
        # The block CRC covers the contents and the compression-type byte.
        if crc32c(index[offset : offset + size + 1]) != unmask_crc(masked):
            raise BundleError(f"CRC mismatch in index block at offset {offset}")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode the prefix-compressed entries of one SSTable block."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_index(index_path: str | Path, verify: bool = False) -> dict[str, dict]:
    """Parse a ``.index`` file into name -> entry metadata.

    Args:
        index_path: path of ``PREFIX.index``.
        verify: check every block's CRC32C.

    Returns:
        dict variable name -> {"dtype": int, "shape": tuple, "shard_id", "offset", "size",
        "crc32c": int | None}; the header (empty key) is under ``""`` with "num_shards".
    """
    index = Path(index_path).read_bytes()
    if len(index) < _FOOTER_LEN:
        raise BundleError(f"{index_path}: too short to be an SSTable")
    footer = index[-_FOOTER_LEN:]
    if struct.unpack_from("<Q", footer, 40)[0] != _MAGIC:
        raise BundleError(f"{index_path}: bad SSTable magic number")
    _, pos = _varint(footer, 0)  # metaindex handle offset (unused)
    _, pos = _varint(footer, pos)  # metaindex handle size
    idx_offset, pos = _varint(footer, pos)
    idx_size, _ = _varint(footer, pos)

    entries: dict[str, dict] = {}
    for _, handle in _block_entries(_read_block(index, idx_offset, idx_size, verify)):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block_entries(_read_block(index, offset, size, verify)):
            name = key.decode("utf-8")
            entries[name] = _parse_header(value) if name == "" else _parse_entry(name, value)
    return entries


def _parse_header(value: bytes) -> dict:
    fields = dict(_proto_fields(value))
    return {"num_shards": int(fields.get(1, 1)), "endianness": int(fields.get(2, 0))}


def _parse_entry(name: str, value: bytes) -> dict:
    entry: dict = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc32c": None}
    for number, v in _proto_fields(value):
        if number == 1:
            entry["dtype"] = v
        elif number == 2:
            dims = []
            for dn, dv in _proto_fields(v):
                if dn == 2:  # TensorShapeProto.dim -> Dim.size (field 1)
                    dims.append(int(dict(_proto_fields(dv)).get(1, 0)))
                elif dn == 3 and dv:
                    raise BundleError(f"{name}: unknown rank")
            entry["shape"] = tuple(dims)
        elif number in (3, 4, 5):
            entry[{3: "shard_id", 4: "offset", 5: "size"}[number]] = int(v)
        elif number == 6:
            entry["crc32c"] = int(v)
        elif number == 7:
            raise BundleError(f"{name}: sliced (partitioned) variables are not supported")
    return entry


def read_bundle(prefix: str | Path, verify: bool = False) -> dict[str, np.ndarray]:
    """Read every tensor of a TF checkpoint.

    Args:
        prefix: checkpoint prefix (``PREFIX.index`` and ``PREFIX.data-*`` must exist). For the
            musicnn package the prefix is the model folder plus "/" (files ``.index``, ...).
        verify: check the CRC32C of each index block and each tensor.

    Returns:
        dict variable name -> numpy array (a copy, native byte order) with the stored shape.

    Raises:
        BundleError: missing files, a malformed index, unsupported dtypes, or a CRC mismatch.
    """
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    if not index_path.is_file():
        raise BundleError(f"checkpoint index not found: {index_path}")
    entries = read_index(index_path, verify=verify)
    num_shards = entries.pop("", {}).get("num_shards", 1)
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name, e in sorted(entries.items()):
        if e["dtype"] not in _DTYPES:
            raise BundleError(f"{name}: unsupported dtype enum {e['dtype']}")
        sid = e["shard_id"]
        if sid not in shards:
            data_path = Path(f"{prefix}.data-{sid:05d}-of-{num_shards:05d}")
            if not data_path.is_file():
                raise BundleError(f"checkpoint data shard not found: {data_path}")
            shards[sid] = data_path.read_bytes()
        raw = shards[sid][e["offset"] : e["offset"] + e["size"]]
        dtype = _DTYPES[e["dtype"]]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise BundleError(f"{name}: {len(raw)} bytes stored for shape {e['shape']} of {dtype}")
        if verify and e["crc32c"] is not None and crc32c(raw) != unmask_crc(e["crc32c"]):
            raise BundleError(f"{name}: tensor CRC mismatch")
        tensors[name] = np.frombuffer(raw, dtype=dtype).reshape(e["shape"]).astype(dtype.newbyteorder("="))
    return tensors
