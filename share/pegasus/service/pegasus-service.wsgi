#
# pegasus-service under Apache HTTPD + mod_ssl + mod_wsgi (see pegasus-service-httpd.conf
# and `man pegasus-service`, section APACHE).  Copy this file to a directory of its own
# (the httpd configuration calls it DOCUMENT_ROOT) and adjust the settings below.
#
# Every UPPERCASE name in this file is a setting, as in Pegasus: add any other one of
# service.py here (PEGASUS_SERVICE_URL_PREFIX, ADMIN_WRITE, PUBLIC_URL, ...).  They win
# over ~/.pegasus/service.py of the user the WSGIDaemonProcess runs as (or the file
# PEGASUS_ENV names).  Apache listens and does TLS, so CERTIFICATE, PRIVATE_KEY,
# SERVER_HOST, SERVER_PORT and MAX_PROCESSES do not apply.
#
# mod_wsgi never runs an application as root: this one runs as the WSGIDaemonProcess
# user (USER_NAME in the httpd configuration), and that decides what it can do.
#

#
# Authentication method:
# "PAMAuthentication": the system login and password (HTTP Basic), checked by PAM.
#   Not being root, PAM can check only the WSGIDaemonProcess user's own password,
#   unless that process may read /etc/shadow (WSGIDaemonProcess ...
#   supplementary-groups=shadow: a process that reads every password hash).
# "NoAuthentication": no password is asked here.  Let Apache authenticate (the
#   <Location /> block of the httpd configuration): the caller is Apache's
#   REMOTE_USER.  Without it, the caller is whoever the URL names.
#
AUTHENTICATION = "PAMAuthentication"

#
# Serve each user's data in a process running as that user?  That needs root, so
# under Apache, True serves only the WSGIDaemonProcess user's data and ensembles
# (other users get 403).  False reads every user's databases as the WSGIDaemonProcess
# user: only those that user may read (each still checked to be its owner's), and
# nobody else's ensembles.  To serve many users each as themselves, run
# pegasus-service itself (as root) instead of under Apache.
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
# Start Pegasus Service (PEGASUS_PYTHON_EXTERNALS, the python-path of the httpd
# configuration, is where pegasus_em is found)
#
from pegasus_em.service.pservice import wsgi_application  # noqa: E402

application = wsgi_application(**{name: value for name, value in dict(globals()).items()
                                  if name.isupper() and not name.startswith("_")})
