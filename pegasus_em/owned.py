"""Reading a user's files from a process that does not run as that user.

pegasus-service without process switching runs as root and reads, for user U,
paths U controls: ~/.pegasus/workflow.db (U may make it a symlink to another
user's file), the STAMPEDE database named by the master DB's `db_url` (any
path U writes there), em.db, and files below a submit directory.  Root may
open anything, so such a file is used only when it is U's own (or, for a
database, root's), reached through directories that only U or root can change;
and while root opens it, the thread takes U's filesystem identity (Linux
setfsuid), so the kernel grants exactly what U's own shell would get and no
swap of a path between the check and the open can widen that.

Whose files are "U's": the owner of U's home directory (the monitoring API is
handed the home, not the user).  A process that runs as that owner skips all
of this: the operating system already limits it to what U may read.
"""

import contextlib
import ctypes
import os
import pwd
import stat

from .errors import Forbidden

_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
NOBODY = 65534


def reader_uid(home):
    """The uid whose files may be read for the user whose home this is; None when this
    process runs as that uid (not root), which needs no check."""
    try:
        uid = os.stat(home).st_uid
    except OSError:
        uid = NOBODY  # no home, no files of its own: read as nobody, they are not found
    return None if uid == os.geteuid() != 0 else uid


def check_owner(st, uid, shown, root_too=False):
    """Forbidden unless `st` is `uid`'s (or root's, with `root_too`)."""
    if st.st_uid != uid and not (root_too and st.st_uid == 0):
        raise Forbidden("%s does not belong to the user whose workflows these are" % shown)


def check_path(real, uid, shown):
    """`real` (resolved: no symlink, no `..`) is a regular file of `uid` or root, and every
    directory above it is `uid`'s or root's and writable by nobody else, except a sticky
    one (like /tmp) whose entry on the way is `uid`'s or root's: so nobody else could
    have put the file there or swapped a directory on the way.  Returns its lstat."""
    folder, st = "/", os.lstat("/")
    for name in real.split("/")[1:]:
        _check_dir(st, folder, uid, shown)
        here = os.path.join(folder, name)
        entry = os.lstat(here)
        sticky_guard = st.st_mode & stat.S_ISVTX and entry.st_uid in (uid, 0)
        if st.st_mode & _WRITABLE_BY_OTHERS and not sticky_guard:
            raise Forbidden("%s is refused: other users can write to the directory %s on its "
                            "way (chmod go-w %s)" % (shown, folder, folder))
        folder, st = here, entry
    if not stat.S_ISREG(st.st_mode):
        raise Forbidden("%s is not a regular file" % shown)
    check_owner(st, uid, shown, root_too=True)
    return st


def _check_dir(st, folder, uid, shown):
    if not stat.S_ISDIR(st.st_mode):
        raise Forbidden("%s changed while it was being checked" % shown)
    if st.st_uid not in (uid, 0):
        raise Forbidden("%s is refused: the directory %s on its way belongs to another user"
                        % (shown, folder))


# ---- filesystem identity --------------------------------------------------

def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "setfsuid") and hasattr(libc, "setfsgid") else None
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def switches_for(uid):
    """True when `as_user(uid)` changes anything: this process is root and `uid` is not."""
    return uid is not None and uid != 0 and _LIBC is not None and os.geteuid() == 0


@contextlib.contextmanager
def as_user(uid):
    """Within the block this thread opens files as `uid` would (its fsuid and fsgid;
    only this thread, unlike seteuid); a no-op unless `switches_for(uid)`."""
    if not switches_for(uid):
        yield
        return
    gid = _gid_of(uid)
    old_gid = _LIBC.setfsgid(gid)
    old_uid = _LIBC.setfsuid(uid)
    try:
        if _LIBC.setfsuid(-1) != uid:  # the call reports the old value, never an error
            raise Forbidden("cannot take the identity of uid %d to read its files" % uid)
        yield
    finally:
        _LIBC.setfsuid(old_uid)
        _LIBC.setfsgid(old_gid)


def _gid_of(uid):
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return NOBODY
