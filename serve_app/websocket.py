"""The WebSocket protocol a web replica's uvicorn speaks: uvicorn's `websockets-sansio`, made to
hold less per connection, since a replica holds thousands of live sockets that mostly wait.

- permessage-deflate is still offered and negotiated, but without context takeover either way
  (`server_no_context_takeover`, `client_no_context_takeover`), and the zlib stream is
  dropped once a message is done. With takeover a connection keeps a compressor and a
  decompressor for its whole life: about 46 KB of the ~75 KB a live socket cost (uvicorn's
  settings, 12 window bits and memLevel 5, kept here for the one stream a message uses).
  The price is the ratio of small messages, each compressed on its own (a 10-record live
  message: ~190 bytes on the wire instead of ~70). CPU is no worse: encoding one such
  message for 5,000 sockets took 35 ms against 45 ms with takeover (measured here).
- The parsed handshake request and the prepared response are let go once the handshake is
  done; uvicorn keeps both (and their headers) until the socket closes, and reads neither again.

Everything else (pings, close handshake, back-pressure, `max_size`) is uvicorn's, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import Frame
from websockets.server import ServerProtocol
from websockets.typing import ExtensionParameter

__all__ = ["LiveWebSocketProtocol"]

# uvicorn's own choice for its deflate, kept: it bounds the zlib memory of one message.
_WINDOW_BITS, _MEM_LEVEL = 12, 5


class _MessageDeflate(PerMessageDeflate):
    """permessage-deflate that keeps no zlib stream between messages (both sides agreed to
    no context takeover, so none is needed)."""

    def encode(self, frame: Frame) -> Frame:
        encoded = super().encode(frame)
        if frame.fin:
            self.__dict__.pop("encoder", None)
        return encoded

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        decoded = super().decode(frame, max_size=max_size)
        if frame.fin:
            self.__dict__.pop("decoder", None)
        return decoded


class _MessageDeflateFactory(ServerPerMessageDeflateFactory):
    def __init__(self) -> None:
        super().__init__(server_no_context_takeover=True, client_no_context_takeover=True,
                         server_max_window_bits=_WINDOW_BITS, client_max_window_bits=_WINDOW_BITS,
                         compress_settings={"memLevel": _MEM_LEVEL})

    def process_request_params(self, params: Sequence[ExtensionParameter],
                               accepted_extensions: Sequence[Extension],
                               ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, agreed = super().process_request_params(params, accepted_extensions)
        assert isinstance(agreed, PerMessageDeflate)
        return response, _MessageDeflate(agreed.remote_no_context_takeover, agreed.local_no_context_takeover,
                                         agreed.remote_max_window_bits, agreed.local_max_window_bits,
                                         agreed.compress_settings)


_DEFLATE = _MessageDeflateFactory()  # holds settings only: one for every connection
_LOGGER = logging.getLogger("uvicorn.error")  # uvicorn's, as its own protocol logs


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, lighter per connection (see the module
    docstring). Pass the class as `uvicorn.Config(ws=...)`."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if self.config.ws_per_message_deflate:
            self.conn = ServerProtocol(extensions=[_DEFLATE], max_size=self.config.ws_max_size, logger=_LOGGER)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.request = None  # type: ignore[assignment]  # read only while connecting

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete:
            self.response = None  # type: ignore[assignment]  # read only by the handshake

