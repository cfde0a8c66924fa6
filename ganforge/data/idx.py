"""Reader for the IDX format of MNIST-style datasets (gzip-compressed or raw).

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte, the number of
dimensions ``d``, then ``d`` big-endian uint32 sizes, then the data, big-endian, row-major.
Compression is detected from the gzip magic bytes, not from the file name.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ganforge.data.base import DataError

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is a gzip file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip file ({e}); delete it so ganforge can "
                            f"fetch it again, or reinstall the dataset") from None
    return data


def parse_idx(data: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a (writable, native-endian) numpy array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"{where}: not an IDX file (bad magic number "
                        f"{data[:4].hex() or 'empty'}); expected an MNIST-style "
                        f"*-idx?-ubyte[.gz] file")
    dtype, ndim = IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{where}: truncated IDX header; delete the file so ganforge can "
                        f"fetch it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(dims, dtype=np.int64))
    need = header + count * dtype.itemsize
    if len(data) < need:
        raise DataError(f"{where}: truncated IDX file: header says {dims} "
                        f"({need} bytes) but it has {len(data)} bytes; delete it so "
                        f"ganforge can fetch it again")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(read_bytes(path), where=str(path))


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip when ``compress`` or when the name ends in .gz).
    Used by tests and for exporting."""
    path = Path(path)
    arr = np.ascontiguousarray(array)
    for code, dt in IDX_TYPES.items():
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            break
    else:
        raise ValueError(f"IDX cannot store dtype {arr.dtype}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + arr.astype(dt, copy=False).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
