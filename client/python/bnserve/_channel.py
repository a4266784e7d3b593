"""gRPC channels and calls shared by the clients: TLS, the bearer token,
deadlines and errors."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import grpc


class BnserveError(RuntimeError):
    """An RPC failed. ``code`` is the gRPC status code name (for example
    ``"NOT_FOUND"``); the message is the server's, which says what to fix."""

    def __init__(self, code: str, message: str, call: str = "") -> None:
        super().__init__("%s%s: %s" % (call + ": " if call else "", code,
                                       message))
        self.code = code
        self.details = message


def open_channel(address: str, tls_ca: Optional[str] = None,
                 tls_cert: Optional[str] = None,
                 tls_key: Optional[str] = None) -> grpc.Channel:
    """A channel to ``host:port``; TLS when a CA (or client certificate) is
    given: mutual TLS with ``tls_cert`` and ``tls_key``."""
    options = [("grpc.max_receive_message_length", 2047 << 20),
               ("grpc.max_send_message_length", 2047 << 20)]
    if not (tls_ca or tls_cert):
        return grpc.insecure_channel(address, options=options)

    def read(path: Optional[str]) -> Optional[bytes]:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key),
                                         read(tls_cert))
    return grpc.secure_channel(address, creds, options=options)


def read_token(token: Optional[str], token_file: Optional[str]) -> str:
    if token_file:
        with open(token_file) as f:
            return f.read().strip()
    return token or ""


class Rpc:
    """Calls one service's methods on a channel with the token attached."""

    def __init__(self, channel: grpc.Channel, service: str, token: str,
                 timeout: float) -> None:
        self._channel = channel
        self._service = service
        self._metadata: Sequence[Tuple[str, str]] = (
            (("authorization", "Bearer " + token),) if token else ())
        self._timeout = timeout

    def unary(self, method: str, request: Any, response_type: Any,
              timeout: Optional[float] = None) -> Any:
        call = self._channel.unary_unary(
            "/%s/%s" % (self._service, method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString)
        try:
            return call(request, metadata=self._metadata,
                         timeout=timeout or self._timeout)
        except grpc.RpcError as e:
            raise BnserveError(e.code().name, e.details(), method) from None

    def stream(self, method: str, requests: Any, response_type: Any,
               on_response: Callable[[Any], None]) -> None:
        call = self._channel.stream_stream(
            "/%s/%s" % (self._service, method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString)
        try:
            for response in call(requests, metadata=self._metadata):
                on_response(response)
        except grpc.RpcError as e:
            raise BnserveError(e.code().name, e.details(), method) from None

    def client_stream(self, method: str, requests: Any,
                      response_type: Any) -> Any:
        call = self._channel.stream_unary(
            "/%s/%s" % (self._service, method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString)
        try:
            return call(requests, metadata=self._metadata)
        except grpc.RpcError as e:
            raise BnserveError(e.code().name, e.details(), method) from None
