"""The HTTP embedding API, Ray-free: settings, request parsing, errors, metrics, middlewares and the FastAPI app.

:mod:`signclip.service` runs this app as the ingress of a Ray Serve application whose model deployments do the
work; :class:`~signclip.api.backend.LocalBackend` runs the same app in one process (tests, notebooks):

    from signclip.api import LocalBackend, ServiceSettings, create_app
    settings = ServiceSettings.from_mapping({"models": {"default": "models/e7.2"}})
    app = create_app(LocalBackend(settings), settings)   # uvicorn.run(app, host="127.0.0.1")

May import ``signclip.io``, ``signclip.pose``, ``signclip.model``, ``signclip.extraction`` and ``signclip.search``;
never Ray.
"""

from signclip.api.app import create_app
from signclip.api.backend import Backend, LocalBackend
from signclip.api.errors import ApiError
from signclip.api.settings import ServiceSettings
from signclip.api.types import Embedded, Rejected

__all__ = ["ApiError", "Backend", "Embedded", "LocalBackend", "Rejected", "ServiceSettings", "create_app"]
