"""Who is asking: HTTP Basic credentials checked in constant time."""

import base64
import binascii
import hmac

from .errors import BadRequest, Unauthorized


def parse_basic(header):
    """(user, password) from an Authorization header; None when absent."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized("Authorization must use the Basic scheme")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BadRequest("Malformed Authorization header")
    user, sep, password = decoded.partition(":")
    if not sep:
        raise BadRequest("Malformed Authorization header")
    return user, password


class BasicAuth:
    """The daemon owner's USERNAME/PASSWORD from service.py."""

    realm = "pegasus-em"

    def __init__(self, username, password):
        self._user = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def authenticate(self, header):
        credentials = parse_basic(header)
        if credentials is None:
            raise Unauthorized("Authentication required")
        user_ok = hmac.compare_digest(credentials[0].encode("utf-8"), self._user)
        password_ok = hmac.compare_digest(credentials[1].encode("utf-8"), self._password)
        if not (user_ok and password_ok):
            raise Unauthorized("Invalid username or password")
        return credentials[0]
