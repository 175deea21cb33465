#
# pegasus-service under Apache HTTPD + mod_wsgi (see pegasus-service-httpd.conf and
# `man pegasus-service`, section APACHE).  Copy this file to a directory of its own
# (the httpd configuration calls it DOCUMENT_ROOT) and adjust the settings below.
#
# Apache terminates TLS, so CERTIFICATE, PRIVATE_KEY, SERVER_HOST and SERVER_PORT do
# not apply here.  The other settings come from ~/.pegasus/service.py of the user the
# WSGIDaemonProcess runs as (or the file PEGASUS_ENV names); these win over it.
#

#
# If pegasus_em is not installed where this Python finds it, name the directory
# that holds the pegasus_em package (the httpd configuration's python-path does the
# same with PEGASUS_PYTHON_EXTERNALS).
#
PEGASUS_EM_PATH = None

#
# Authentication method: "PAMAuthentication" (system login and password, or the
# user's pegasus-em PASSWORD) or "NoAuthentication" (no password is asked: the
# caller is REMOTE_USER when Apache authenticated one, else the user the URL names).
# PAM can check other users' passwords only in a process running as root.
#
AUTHENTICATION = "PAMAuthentication"

#
# Serve each user's data in a process running as that user?  Needs a process
# running as root; mod_wsgi daemon processes do not run as root, so under Apache
# this serves only the data of the WSGIDaemonProcess user (others get 403) unless
# it is False, when every user's files are read as that user.
#
PROCESS_SWITCHING = True

#
# Authorization:
# None, '', False -> users can only access their own data.
# '*' -> all users are admin users and can access the data of any other user.
# {'u1', .., 'un'} OR ['u1', .., 'un'] -> only users u1, .., un can access other
# users' data.
#
ADMIN_USERS = None

#
# Start Pegasus Service
#
import sys  # noqa: E402

if PEGASUS_EM_PATH and PEGASUS_EM_PATH not in sys.path:
    sys.path.insert(0, PEGASUS_EM_PATH)

from pegasus_em.pservice import wsgi_application  # noqa: E402

application = wsgi_application(AUTHENTICATION=AUTHENTICATION,
                               PROCESS_SWITCHING=PROCESS_SWITCHING,
                               ADMIN_USERS=ADMIN_USERS)
