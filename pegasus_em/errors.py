"""One error tree for the whole project.

Each class carries the HTTP status the API answers with and the exit code the
CLI returns, so server and client agree on what a failure means.
"""


def shown(value, limit=200):
    """A value as an error message shows it: bare, as Pegasus 5.x prints it, so
    scripts matching 5.x texts match ours; control characters escaped and a very
    long value cut, so a message cannot rewrite the terminal it is printed on."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


class EMError(Exception):
    """Base of every expected failure; `message` is safe to show to a user."""

    status = 400
    exit_code = 1

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BadRequest(EMError):
    status = 400


class Unauthorized(EMError):
    status = 401


class Forbidden(EMError):
    status = 403


class NotFound(EMError):
    status = 404


class MethodNotAllowed(EMError):
    status = 405

    def __init__(self, message, allowed=()):
        super().__init__(message)
        self.allowed = tuple(allowed)


class Conflict(EMError):
    status = 409


class LengthRequired(EMError):
    status = 411


class TooLarge(EMError):
    status = 413


class UnsupportedMediaType(EMError):
    status = 415


class TooManyRequests(EMError):
    """Refused without looking: too many failures lately; `retry_after` in seconds."""

    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


class DiskFull(EMError):
    """No space left for the database: the change was rolled back, nothing else is
    lost, and the same request works again once space is freed."""

    status = 503


class ConfigError(EMError):
    """The configuration cannot be used; raised before anything starts."""

    exit_code = 2


class ClientError(EMError):
    """The client could not get an answer (daemon down, bad reply)."""
