"""Bridge between the GIMP plug-in and the Neural Collage engine (protocol v1, see PROTOCOL.md).

Standard library only (pyzmq optional): it runs inside GIMP's bundled Python 3.9+.

    from bridge.client import EngineClient, ensure_engine   # the client (pyzmq or the pure-Python bridge.zmtp)
    from bridge.protocol import DEFAULT_ADDRESS, Array       # framing: header, array frames, limits, dtypes
    from bridge.requests import EditRequest, SwapParams      # the typed requests and replies, every range
    from bridge.errors import BridgeError, EngineError       # one error type with codes, both ends
"""

from .protocol import DEFAULT_ADDRESS, PROTOCOL_VERSION

__all__ = ["DEFAULT_ADDRESS", "PROTOCOL_VERSION"]
