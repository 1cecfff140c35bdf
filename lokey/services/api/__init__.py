"""The API service (port 8080): see :mod:`lokey.services.api.app`."""

from lokey.services.api.app import ApiService, create_api_app

__all__ = ["ApiService", "create_api_app"]
