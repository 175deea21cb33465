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


class MethodNotAllowed(EMError):
    """The path exists; `allowed` lists its methods for the Allow header."""

    status = 405

    def __init__(self, message, allowed=()):
        super().__init__(message)
        self.allowed = tuple(allowed)


def _answered_with(status, name, doc):
    return type(name, (EMError,), {"status": status, "__doc__": doc, "__module__": __name__})


# The plain ones: an HTTP status and when it is raised.
BadRequest = _answered_with(400, "BadRequest", "A value the request carries is missing or invalid.")
Unauthorized = _answered_with(401, "Unauthorized", "No credentials or wrong ones.")
Forbidden = _answered_with(403, "Forbidden", "The user is known but may not do this.")
NotFound = _answered_with(404, "NotFound", "No such ensemble, workflow, trigger or page.")
Conflict = _answered_with(409, "Conflict", "The act does not fit the current state.")
LengthRequired = _answered_with(411, "LengthRequired", "A chunked request body.")
TooLarge = _answered_with(413, "TooLarge", "A request body or a page above its cap.")
UnsupportedMediaType = _answered_with(415, "UnsupportedMediaType", "Neither form nor JSON.")


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
