"""Bridge between the GIMP plug-in and the Neural Collage engine (protocol v1, see PROTOCOL.md).

Standard library only (pyzmq optional): it runs inside GIMP's bundled Python 3.9+.

    from bridge.client import EngineClient, ensure_engine
    from bridge.protocol import DEFAULT_ADDRESS, Array
"""

from .protocol import DEFAULT_ADDRESS, PROTOCOL_VERSION

__all__ = ["DEFAULT_ADDRESS", "PROTOCOL_VERSION"]
