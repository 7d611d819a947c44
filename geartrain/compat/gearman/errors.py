"""Exception classes of the python-gearman 2.x API (same names, same hierarchy: all derive from GearmanError)."""

from __future__ import annotations


class GearmanError(Exception):
    """Base class of every error this package raises."""


class ConnectionError(GearmanError):  # noqa: A001 - python-gearman's name, shadows the builtin on purpose
    """A socket could not be opened, broke, or was closed by the server."""


class ServerUnavailable(GearmanError):
    """No server in the list could be reached."""


class ProtocolError(GearmanError):
    """The server sent something that does not follow the Gearman protocol."""


class UnknownCommandError(GearmanError):
    """The server sent a packet type this side does not handle."""


class ExceededConnectionAttempts(GearmanError):
    """A job request was (re)sent more times than its max_retries allow."""


class InvalidClientState(GearmanError):
    """The client's view of a request does not match what the server says."""


class InvalidWorkerState(GearmanError):
    """The worker received something it did not expect in its current state."""


class InvalidAdminClientState(GearmanError):
    """An admin command got no (or the wrong) answer."""
