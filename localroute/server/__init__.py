"""The OpenAI-compatible HTTP API over the routed stack (`localroute serve`)."""

from localroute.server.app import create_app
from localroute.server.settings import ServerSettings, check_bind, is_loopback

__all__ = ["ServerSettings", "check_bind", "create_app", "is_loopback"]
