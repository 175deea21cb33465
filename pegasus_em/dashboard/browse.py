"""A read-only view of a submit directory that cannot leave it.

Pegasus's browser joins the URL path to the submit dir without a check, so
`../` lists the whole disk.  Here a path is a list of plain names (no `..`, no
`.`, no NUL, no slash); it is resolved with every symlink followed and must end
inside the resolved submit dir (a sub-workflow's `name -> name.000` link is
fine, a link to /etc is not); the file is then opened without following a
final symlink, and checked to be the same file that was resolved.  When the
process runs as root (no process switching), only files owned by the user
whose data is shown are served (owned.py holds that rule for the databases too).
"""

import errno
import os
import stat

from .. import owned
from ..errors import BadRequest, Forbidden, NotFound, TooLarge

MAX_ENTRIES = 5000        # entries listed per directory
VIEW_BYTES = 1 << 20      # text shown inline (the tail of larger files)
MAX_DOWNLOAD = 64 << 20   # largest raw download
SNIFF = 8192
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def split(path):
    """URL path below the submit dir -> list of names; BadRequest on anything odd."""
    names = [n for n in (path or "").split("/") if n != ""]
    for n in names:
        if n in (".", "..") or "\0" in n or "\\" in n:
            raise BadRequest("Invalid path: %r" % "/".join(names))
    return names


class Browser:
    def __init__(self, root, owner_uid=None):
        """`root`: the submit dir; `owner_uid`: when set, every file served must be its."""
        if not root or not os.path.isabs(root):
            raise NotFound("This workflow has no submit directory on record")
        try:
            self.root = os.path.realpath(root)
            st = os.stat(self.root)
        except OSError as e:
            raise NotFound("Submit directory %s cannot be read: %s" % (root, e.strerror))
        if not stat.S_ISDIR(st.st_mode):
            raise NotFound("Submit directory %s is not a directory" % root)
        self.owner_uid = owner_uid
        self._check_owner(st, root)

    def _check_owner(self, st, shown):
        if self.owner_uid is not None:
            owned.check_owner(st, self.owner_uid, shown)

    def resolve(self, names):
        """The real path of `names` below the root; Forbidden when it leads outside."""
        real = os.path.realpath(os.path.join(self.root, *names))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise Forbidden("%s leads outside the submit directory" % "/".join(names))
        return real

    def inside(self, path):
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def stat(self, names):
        real = self.resolve(names)
        try:
            st = os.stat(real)
        except OSError as e:
            raise NotFound("%s: %s" % ("/".join(names) or ".", e.strerror))
        self._check_owner(st, "/".join(names))
        return real, st

    def listing(self, names):
        """[{name, dir, size, mtime, link, outside}] of a directory, folders first."""
        real, st = self.stat(names)
        if not stat.S_ISDIR(st.st_mode):
            raise BadRequest("%s is not a directory" % "/".join(names))
        out = []
        try:
            with os.scandir(real) as it:
                for entry in it:
                    if len(out) >= MAX_ENTRIES:
                        break
                    out.append(self._entry(entry))
        except OSError as e:
            raise Forbidden("%s cannot be listed: %s" % ("/".join(names) or ".", e.strerror))
        out.sort(key=lambda e: (not e["dir"], e["name"]))
        return out

    def _entry(self, entry):
        link = None
        outside = False
        try:
            if entry.is_symlink():
                link = os.readlink(entry.path)
                outside = not self.inside(entry.path)
            st = entry.stat()
            is_dir, size, mtime = stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime
        except OSError:
            is_dir, size, mtime = False, None, None  # a dangling link
        return {"name": entry.name, "dir": is_dir and not outside,
                "size": None if is_dir else size, "mtime": mtime, "link": link,
                "outside": outside}

    def read(self, names, limit=VIEW_BYTES, tail=True):
        """(bytes, file size, truncated) of a regular file: all of it, or its last `limit`
        bytes (`limit` None: all of it, for a download)."""
        real, st = self.stat(names)
        if not stat.S_ISREG(st.st_mode):
            raise BadRequest("%s is not a regular file" % "/".join(names))
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Forbidden("%s changed while it was being opened" % "/".join(names))
            raise NotFound("%s: %s" % ("/".join(names), e.strerror))
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
                raise Forbidden("%s changed while it was being opened" % "/".join(names))
            self._check_owner(fst, "/".join(names))
            size = fst.st_size
            if limit is None:
                if size > MAX_DOWNLOAD:
                    raise TooLarge("%s is %d bytes, more than the dashboard sends (%d); read "
                                   "it on the submit host" % ("/".join(names), size,
                                                              MAX_DOWNLOAD))
                return _read_all(fd, size), size, False
            start = max(0, size - limit) if tail else 0
            os.lseek(fd, start, os.SEEK_SET)
            data = _read_all(fd, min(limit, size))
            return data, size, start > 0 or size > limit
        finally:
            os.close(fd)


def _read_all(fd, size):
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def is_binary(data):
    return b"\0" in data[:SNIFF]
