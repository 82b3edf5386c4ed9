"""How a site's CSV table is written: delimiter, decimal mark and text encoding.

A settings model only, importing nothing of ours, so that :mod:`federated.study` (read by site
code) can hold it without an import cycle; :mod:`federated.site.tables` reads tables with it.
"""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

#: Names a command line or a config file may use for the tab character.
_TAB_NAMES = frozenset({"tab", "\\t", "TAB"})


class TableFormat(BaseModel):
    """How a CSV table is written (ignored for Parquet).

    Parameters
    ----------
    delimiter : str, optional
        One character between fields; ``"tab"`` or ``"\\t"`` mean a tab. ``None`` (default):
        detected among ``,`` ``;`` tab ``|`` from the header and the first lines
        (:func:`federated.site.tables.detect_delimiter`).
    decimal : {".", ","}
        The decimal mark of numbers (``","`` as German, French or Dutch Excel writes them).
    encoding : str, optional
        A Python codec name (``"cp1252"``, ``"latin-1"``, ``"utf-16"``; checked with
        :func:`codecs.lookup` and stored under its canonical name). ``None`` (default): UTF-8,
        with or without a byte-order mark.

    A delimiter equal to the decimal mark is refused: ``54,3`` could not be read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str | None = None
    decimal: Literal[".", ","] = "."
    encoding: str | None = None

    @field_validator("delimiter", mode="before")
    @classmethod
    def _one_character(cls, value: object) -> object:
        if isinstance(value, str) and value in _TAB_NAMES:
            return "\t"
        if isinstance(value, str) and (len(value) != 1 or value in '"\r\n'):
            raise ValueError(f"delimiter must be one character other than a quote or a line break, "
                             f"but was {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_codec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            name = codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (want a codec name such as "
                             f"'utf-8', 'cp1252' or 'latin-1')") from None
        try:
            b"x".decode(name)
        except LookupError:  # a bytes-to-bytes codec (base64, zlib, …)
            raise ValueError(f"{value!r} is not a text encoding (want a codec name such as "
                             f"'utf-8', 'cp1252' or 'latin-1')") from None
        except UnicodeError:  # a text encoding that needs more than one byte
            pass
        return name

    @model_validator(mode="after")
    def _unambiguous(self) -> TableFormat:
        if self.delimiter == self.decimal:
            raise ValueError(f"delimiter and decimal mark are both {self.decimal!r}: ambiguous "
                             f"(a table with decimal commas is usually ';'-separated)")
        return self
