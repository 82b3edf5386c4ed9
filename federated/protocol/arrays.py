"""Numeric arrays on the wire: exact little-endian bytes in base64, shape-checked, finite.

JSON floats would be exact too (``repr`` round-trips), but base64 of the IEEE-754 bytes is
an order of magnitude smaller and faster for the K×p risk-set sums. A masked statistic
(secure aggregation) travels as ``r128``: ring elements of Z_2^128, 16 bytes each (low then
high 64-bit word, little-endian), indistinguishable from uniform. No pickle, ever.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from federated.protocol.secagg import Ring, to_bytes

_DTYPES: dict[str, str] = {"f8": "<f8", "i8": "<i8", "r128": "<u8"}
_WIDTH: dict[str, int] = {"f8": 8, "i8": 8, "r128": 16}
DType = Literal["f8", "i8", "r128"]


class WireArray(BaseModel):
    """An n-dimensional array as sent between coordinator and sites.

    ``dtype`` is ``"f8"`` (float64), ``"i8"`` (int64) or ``"r128"`` (masked ring
    elements); ``data`` is the base64 of the C-ordered little-endian bytes. Validation
    rejects a byte count that does not match ``shape`` and any NaN or infinity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: DType
    shape: tuple[int, ...]
    data: str
    _array: np.ndarray = PrivateAttr()  # decoded once, on validation

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in shape):
            raise ValueError(f"shape must be non-negative, got {shape}")
        return shape

    @model_validator(mode="after")
    def _check_payload(self) -> WireArray:
        arr = self._decode()
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("array contains NaN or infinity")
        arr.flags.writeable = False
        self._array = arr
        return self

    def _decode(self) -> np.ndarray:
        try:
            raw = binascii.a2b_base64(self.data.encode("ascii"), strict_mode=True)
        except (ValueError, UnicodeEncodeError) as exc:
            raise ValueError(f"array data is not valid base64: {exc}") from None
        want = int(np.prod(self.shape, dtype=np.int64)) * _WIDTH[self.dtype]
        if len(raw) != want:
            raise ValueError(f"array has {len(raw)} bytes, want {want} for shape {self.shape}")
        shape = (*self.shape, 2) if self.dtype == "r128" else self.shape
        return np.frombuffer(raw, dtype=_DTYPES[self.dtype]).reshape(shape)

    @property
    def masked(self) -> bool:
        """True for ring elements of secure aggregation."""
        return self.dtype == "r128"

    def ring(self) -> Ring:
        """The masked ring elements (``dtype == "r128"`` only)."""
        if not self.masked:
            raise ValueError(f"not a masked array (dtype {self.dtype})")
        return Ring(lo=self._array[..., 0].copy(), hi=self._array[..., 1].copy())

    @classmethod
    def from_ring(cls, ring: Ring) -> WireArray:
        """Wire form of masked ring elements."""
        return cls(dtype="r128", shape=ring.shape, data=base64.b64encode(to_bytes(ring)).decode("ascii"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WireArray):
            return NotImplemented
        return (self.dtype, self.shape, self.data) == (other.dtype, other.shape, other.data)

    def __hash__(self) -> int:
        return hash((self.dtype, self.shape, self.data))

    def view(self) -> np.ndarray:
        """The decoded array, read-only (no copy)."""
        return self._array

    def to_numpy(self) -> np.ndarray:
        """The array as a fresh, writable native-endian numpy array."""
        return self._array.astype(self._array.dtype.newbyteorder("="), copy=True)

    @classmethod
    def from_numpy(cls, arr: Any) -> WireArray:
        """Encode ``arr`` (float or integer) exactly; refuses NaN and infinities."""
        a = np.asarray(arr)
        dtype: Literal["f8", "i8"] = "i8" if a.dtype.kind in "iub" else "f8"
        a = np.ascontiguousarray(a, dtype=_DTYPES[dtype])
        return cls(dtype=dtype, shape=tuple(int(s) for s in a.shape),
                   data=base64.b64encode(a.tobytes()).decode("ascii"))


def expect_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return ``arr`` if its shape is ``shape``, else raise ``ValueError`` naming ``name``."""
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, want {shape}")
    return arr

