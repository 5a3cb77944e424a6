"""What a probe reads of a body: at most BODY_LIMIT bytes, inflated only that far."""

from __future__ import annotations

import zlib

__all__ = ["BODY_LIMIT", "PROBE_HEADERS", "Inflate", "_BadEncoding", "inflater"]

# What every HTTP probe sends (a probe's own header of the same name wins). An uncompressed body,
# please: one compressed anyway is inflated only as far as the bounded read, and only from gzip
# or deflate (Inflate).
PROBE_HEADERS = {"user-agent": "hbsm-probe", "accept-encoding": "identity"}

# The most of a body a probe reads: enough for any health document, and a 10 MB page
# (or an endless stream) costs no more than this.
BODY_LIMIT = 64 * 1024


class _BadEncoding(Exception):
    """A gzip or deflate body that does not decode."""


class Inflate:
    """A gzip or deflate body decoded with a cap on what each call may produce.

    Fix (tests/reliability): a decoder that inflates a chunk whole let a hostile target that
    ignores our `accept-encoding: identity` and answers a gzip bomb turn each 64 KiB chunk into
    ~64 MiB (a 200 MiB bomb cost one probe 45 to 140 MB); `max_length` keeps it to what is read.
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # 32 + 15: a zlib or gzip header, detected. Raw deflate (no header) is tried on failure.
        self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)
        self._started = False

    def decode(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._inflate.decompress(data, max_length)
        except zlib.error as exc:
            if self._started or self.encoding != "deflate":
                raise _BadEncoding(f"{self.encoding} body does not decode: {exc}") from None
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._started = True
            return self.decode(data, max_length)
        self._started = True
        return out


_INFLATED = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


def inflater(content_encoding: str) -> Inflate | str | None:
    """How to decode a body: an Inflate, None (as is), or the encoding hbsm does not decode."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in _INFLATED:
        return Inflate(_INFLATED[encoding])
    # Anything else (br, zstd, stacked encodings) stays as sent: hbsm asked for identity.
    return encoding
