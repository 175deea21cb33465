"""pegasus-em: the command line of the ensemble manager (Pegasus 5.x compatible).

`build_parser()` declares every verb (the man-page test reads it), `parse_args()`
adds the checks argparse cannot express, and each `cmd_*` function sends one
request and hands the reply to `fmt`.  Transport lives in `client`, layouts in
`fmt`; nothing here imports the server side except `server`, lazily.
"""

import argparse
import difflib
import json
import os
import shlex
import sys

from .. import __version__, config, fmt
from ..core import model
from . import client, legacy, watch
from ..errors import BadRequest, ClientError, EMError
from ..core.states import EnsembleState, WorkflowState


class UsageError(Exception):
    """A bad argument found after argparse ran; reported exactly like argparse's own."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistyped verb gets the closest one, not the list of all 30."""

    def _check_value(self, action, value):
        if action.dest == "verb" and value not in action.choices:
            verb = closest_verb(value, action.choices)
            if verb:
                raise argparse.ArgumentError(
                    action, "invalid choice: %r (did you mean %s?)" % (value, verb))
        super()._check_value(action, value)


def closest_verb(word, choices):
    """The verb `word` most likely stands for (the only one it begins, or the nearest
    spelling), or None; an alias found stands for its verb."""
    starting = {p.prog for name, p in choices.items() if name.startswith(word)}
    found = sorted(starting) if len(starting) == 1 else [
        choices[n].prog for n in difflib.get_close_matches(word, list(choices), 1, 0.7)]
    return found[0].split()[-1] if found else None


# --------------------------------------------------------------------------- parser

def build_parser():
    parser = _Parser(
        prog="pegasus-em", description="Client for the Pegasus ensemble manager.")
    parser.add_argument("--version", action="version", version="pegasus-em %s" % __version__)
    _add_connection(parser, None)
    subs = parser.add_subparsers(dest="verb", metavar="VERB")
    subs.required = True
    _add_server(subs)
    _add_init(subs)
    _add_ensemble_verbs(subs)
    _add_workflow_verbs(subs)
    _add_trigger_verbs(subs)
    _add_beyond_verbs(subs)
    return parser


def _add_connection(parser, default):
    """--url/--cafile on the main parser and again on each client verb; the verbs
    use SUPPRESS so an option given before the verb is not reset to None after it."""
    parser.add_argument("--url", default=default, metavar="URL",
                        help="ensemble manager URL (default: $PEGASUS_EM_URL, the running "
                             "daemon's ~/.pegasus/em-server.json, http://127.0.0.1:EM_PORT)")
    parser.add_argument("--cafile", default=default, metavar="FILE",
                        help="CA certificate to trust for an https URL "
                             "(default: $PEGASUS_EM_CAFILE)")


def _verb(subs, name, func, help, aliases=(), target=None, json_out=False, check=None):
    """One subcommand; `target` adds the ENSEMBLE or ENSEMBLE.WORKFLOW positional."""
    p = subs.add_parser(name, aliases=list(aliases), help=help, description=help)
    p.set_defaults(func=func, target=target, check=check, subparser=p, json=False)
    _add_connection(p, argparse.SUPPRESS)
    if json_out:
        p.add_argument("--json", action="store_true", help="print the server's JSON reply")
    if target == "ensemble":
        p.add_argument("ensemble", metavar="ENSEMBLE")
    elif target == "workflow":
        p.add_argument("name", metavar="ENSEMBLE.WORKFLOW")
    return p


def _add_server(subs):
    p = subs.add_parser("server", help="start the ensemble manager",
                        description="Run the ensemble manager daemon in the foreground.")
    p.set_defaults(func=cmd_server, target=None, check=None, subparser=p)
    p.add_argument("--host", help="listening address (default 127.0.0.1; a non-loopback "
                                  "one needs --allow-remote)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host that is not loopback, although HTTP Basic credentials "
                        "then cross the network in clear text")
    p.add_argument("--port", type=int, help="listening port (default EM_PORT or "
                                            "7919 + uid %% 57616; 0 picks a free port)")
    p.add_argument("-d", "--debug", action="store_true", help="enable debug logging")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging, repeatable as in Pegasus (-vv: as --debug)")


def _add_init(subs):
    p = subs.add_parser("init", help="write ~/.pegasus/service.py with a random password",
                        description="Create the configuration file with USERNAME (your login) "
                                    "and a random PASSWORD, readable only by you. An existing "
                                    "file is left as it is.")
    p.set_defaults(func=cmd_init, target=None, check=None, subparser=p)


def _add_limits(p, default):
    p.add_argument("-P", "--max-planning", type=int, default=default, metavar="N",
                   help="maximum number of workflows being planned at once")
    p.add_argument("-R", "--max-running", type=int, default=default, metavar="N",
                   help="maximum number of workflows running at once")


def _add_max_failures(p):
    p.add_argument("--max-failures", type=int, metavar="N",
                   help="hold the ensemble after N failed workflows in a row (0: never)")


def _add_ensemble_verbs(subs):
    _verb(subs, "ensembles", cmd_ensembles, "list ensembles", ["e"], json_out=True)
    p = _verb(subs, "create", cmd_create, "create an ensemble", ["c"], target="ensemble")
    _add_limits(p, 1)
    _add_max_failures(p)
    _verb(subs, "pause", cmd_pause, "pause an active ensemble", target="ensemble",
          json_out=True)
    _verb(subs, "activate", cmd_activate, "activate a paused or held ensemble",
          target="ensemble", json_out=True)
    _verb(subs, "hold", cmd_hold, "hold an ensemble: plan nothing, run nothing new",
          target="ensemble", json_out=True)
    p = _verb(subs, "config", cmd_config, "change an ensemble's limits",
              target="ensemble", json_out=True, check=_check_config)
    _add_limits(p, None)
    _add_max_failures(p)
    p = _verb(subs, "workflows", cmd_workflows, "list the workflows of an ensemble", ["w"],
              target="ensemble", json_out=True)
    p.add_argument("-l", "--long", action="store_true", help="show detailed output")


def _add_workflow_verbs(subs):
    p = _verb(subs, "submit", cmd_submit, "submit a workflow to an ensemble", ["sub"],
              target="workflow", check=_check_submit)
    p.add_argument("-p", "--priority", default="0", metavar="N",
                   help="workflow priority (default 0; higher is planned first)")
    p.add_argument("--after", metavar="E.W[,E.W...]",
                   help="plan it only once these workflows are SUCCESSFUL "
                        "(a name without a dot is in the same ensemble)")
    p.add_argument("--run-after", metavar="TIME",
                   help="do not plan it before TIME: a duration from now (2h, 30m, 1h30m) "
                        "or an ISO-8601 time (2030-01-31T18:00)")
    # Everything after ENSEMBLE.WORKFLOW belongs to the planning command, options too.
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="plan_command [arg ...]",
                   help="the command that plans the workflow, and its arguments")
    _verb(subs, "status", cmd_status, "show a workflow", ["st"], target="workflow",
          json_out=True)
    _verb(subs, "analyze", cmd_analyze, "show the planner log and pegasus-analyzer output",
          ["an"], target="workflow")
    for name, func, help in (("replan", cmd_replan, "plan a failed workflow again"),
                             ("rerun", cmd_rerun, "run a failed workflow again"),
                             ("abort", cmd_abort, "abort a workflow")):
        _verb(subs, name, func, help, target="workflow", json_out=True)
    p = _verb(subs, "priority", cmd_priority, "change a workflow's priority",
              target="workflow", json_out=True)
    p.add_argument("-p", "--priority", type=int, required=True, metavar="N",
                   help="new workflow priority")


def _add_trigger_options(p):
    p.add_argument("-t", "--timeout", metavar="TIMEOUT",
                   help="stop the trigger after this long, as INTERVAL")
    p.add_argument("-a", "--args", nargs="+", action="extend", default=[], metavar="ARGS",
                   help="arguments for WORKFLOW_SCRIPT (each is split like a shell would)")


def _add_trigger_positionals(p):
    p.add_argument("trigger", metavar="TRIGGER")
    p.add_argument("interval", metavar="INTERVAL",
                   help="time between firings: <int> <s|m|h|d>, e.g. 30s or '5 m'")
    p.add_argument("workflow_script", metavar="WORKFLOW_SCRIPT",
                   help="script that plans one workflow (made absolute)")


def _add_trigger_verbs(subs):
    p = _verb(subs, "cron-trigger", cmd_cron_trigger, "submit a workflow every INTERVAL",
              target="ensemble", check=_check_trigger)
    _add_trigger_positionals(p)
    _add_trigger_options(p)
    p = _verb(subs, "file-pattern-trigger", cmd_file_pattern_trigger,
              "every INTERVAL, submit a workflow for files matching PATTERN",
              target="ensemble", check=_check_trigger)
    _add_trigger_positionals(p)
    p.add_argument("file_patterns", nargs="+", metavar="PATTERN",
                   help="absolute glob pattern of input files")
    _add_trigger_options(p)
    p = _verb(subs, "triggers", cmd_triggers, "list the triggers of an ensemble", ["t"],
              target="ensemble", json_out=True)
    p.add_argument("-l", "--long", action="store_true", help="show detailed output")
    p = _verb(subs, "stop-trigger", cmd_stop_trigger, "stop a trigger",
              target="ensemble", json_out=True)
    p.add_argument("trigger", metavar="TRIGGER")
    p.add_argument("--purge", action="store_true",
                   help="also forget the trigger and its history")
    p = _verb(subs, "start-trigger", cmd_start_trigger, "start a STOPPED, FAILED or TIMED_OUT "
              "trigger again", target="ensemble", json_out=True)
    p.add_argument("trigger", metavar="TRIGGER")
    p.add_argument("-t", "--timeout", metavar="TIMEOUT",
                   help="stop it this long from now, as INTERVAL (needed past its deadline)")


def _add_beyond_verbs(subs):
    p = _verb(subs, "history", cmd_history, "show every state change of an ensemble or a "
              "workflow, with its time and reason", json_out=True, check=_check_history)
    p.add_argument("name", metavar="ENSEMBLE[.WORKFLOW]")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="events per page (default 100, at most 1000)")
    page = p.add_mutually_exclusive_group()
    page.add_argument("--after", type=int, metavar="ID",
                      help="the events after event ID, oldest first (default: the newest)")
    page.add_argument("--before", type=int, metavar="ID",
                      help="the newest events before event ID")
    page.add_argument("--all", action="store_true", help="every event, oldest first")
    _verb(subs, "why", cmd_why, "explain why a workflow is where it is", target="workflow",
          json_out=True)
    p = _verb(subs, "watch", cmd_watch, "watch ensembles and workflows change, live",
              check=_check_watch)
    p.add_argument("ensemble", nargs="?", metavar="ENSEMBLE",
                   help="also show the workflows of this ensemble")
    p.add_argument("-n", "--interval", type=float, default=2.0, metavar="SECONDS",
                   help="time between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print the tables once and exit")
    p = _verb(subs, "import", cmd_import, "take over the ensembles of a Pegasus 5.x "
              "ensemble manager", json_out=True)
    p.add_argument("--db", metavar="PATH",
                   help="the Pegasus database to read (default ~/.pegasus/workflow.db)")


# --------------------------------------------------------------------------- checks

def parse_args(argv=None):
    """argparse, then the checks it cannot express; both exit 2 on bad usage."""
    args = build_parser().parse_args(argv)
    try:
        for check in (_TARGET_CHECKS.get(args.target), args.check):
            if check:
                check(args)
    except UsageError as e:
        args.subparser.error(str(e))
    return args


def _check_ensemble(args):
    """`pegasus-em config myruns.run1 -P 1` is the Pegasus docs' own example:
    accept it, but say which ensemble we act on.  `create` sends the name as typed,
    as 5.x does, and gets 5.x's refusal rather than another ensemble."""
    given = args.ensemble
    if "." not in given or args.func is cmd_create:
        return
    head = given.split(".", 1)[0]
    if not head:
        raise UsageError("Invalid ENSEMBLE: %s" % given)
    print("note: %s is ENSEMBLE.WORKFLOW; using ensemble %s" % (given, head),
          file=sys.stderr)
    args.ensemble = head


def _check_workflow(args):
    args.ensemble, args.workflow = split_ew(args.name)


_TARGET_CHECKS = {"ensemble": _check_ensemble, "workflow": _check_workflow}


def split_ew(name):
    parts = name.split(".")
    if len(parts) != 2 or not all(parts):
        raise UsageError("Invalid ENSEMBLE.WORKFLOW: %s" % name)
    return parts[0], parts[1]


def _check_config(args):
    if args.max_planning is None and args.max_running is None and args.max_failures is None:
        raise UsageError("Specify --max-planning, --max-running or --max-failures")


def _check_submit(args):
    if not args.command:
        raise UsageError("Specify ENSEMBLE.WORKFLOW and planning command")
    exe = pathfind(args.command[0])
    if exe is None:
        raise UsageError("invalid planning command: %s (%s)"
                         % (args.command[0], why_not_runnable(args.command[0])))
    args.plan_command = quote_command([exe] + args.command[1:])
    if args.run_after is not None:
        args.run_after = run_after(args.run_after)


def run_after(value):
    """An ISO-8601 time becomes epoch seconds here, in this client's time zone;
    a duration goes as typed (the server adds it to its clock)."""
    text = value.strip()
    if model.span(text) is not None:
        return text
    try:
        return "%.3f" % model.moment(text)
    except BadRequest:
        raise UsageError("invalid --run-after: %s (a duration like 2h or 30m, or an "
                         "ISO-8601 time like 2030-01-31T18:00)" % value)


def pathfind(command):
    """Like 5.x: a name with a slash must be an executable file; else search $PATH."""
    if os.path.dirname(command):
        return os.path.abspath(command) if _is_exe(command) else None
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder, command)
        if _is_exe(candidate):
            return candidate
    return None


def _is_exe(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def why_not_runnable(command):
    """What `pathfind` found wrong with `command`, in a few words."""
    if not os.path.dirname(command):
        here = "; for the one here, type ./%s" % command if os.path.isfile(command) else ""
        return "no executable of that name in PATH%s" % here
    if os.path.isdir(command):
        return "a directory, not a script"
    if not os.path.exists(command):
        return "not found"
    return "not executable: chmod +x %s" % command


def quote_command(words):
    """5.x's plan_command wire format: every word in double quotes, space-separated."""
    return '"' + '" "'.join(words) + '"'


def _check_trigger(args):
    """Interval, timeout and patterns go as typed, as 5.x sends them: the server
    checks them and its message is printed, word for word what 5.x prints."""
    try:
        args.script_args = [w for value in args.args for w in shlex.split(value)]
    except ValueError as e:
        raise UsageError("cannot split --args: %s" % e)


# --------------------------------------------------------------------------- running

def main(argv=None):
    """Parse, connect, run one verb; return the exit status (never a traceback)."""
    try:
        args = parse_args(argv)
        return _run(args)
    except SystemExit as e:  # argparse usage errors, -h and --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return 130


def _run(args):
    try:
        if args.func in (cmd_server, cmd_init):
            return args.func(args) or 0
        return args.func(_connect(args), args) or 0
    except client.ReplyError as e:
        print("ERROR: %s%s" % (e.message, _reply_hint(e)))  # on stdout, as 5.x prints them
        return 1
    except EMError as e:
        print("ERROR: %s" % e.message, file=sys.stderr)
        return e.exit_code


def _reply_hint(e):
    """A password refused by our daemon may be one it read before the file was edited."""
    challenge = (e.headers or {}).get("WWW-Authenticate") or ""
    if e.status != 401 or 'realm="pegasus-em"' not in challenge:
        return ""
    return (" (pegasus-em server reads USERNAME and PASSWORD from %s only when it starts: "
            "restart it after editing that file)" % config.config_path())


def _connect(args):
    """Config (warnings to stderr), credentials, then the server address."""
    cfg = config.load()
    for warning in cfg.warnings:
        print("WARNING: %s" % warning, file=sys.stderr)
    if not (cfg.get("USERNAME") and cfg.get("PASSWORD")):
        raise ClientError("Specify USERNAME and PASSWORD in %s"
                          % (cfg.path or config.config_path()))
    found = client.discover(args.url, os.environ, cfg)
    cafile = args.cafile or os.environ.get("PEGASUS_EM_CAFILE")
    return client.Client(found.url, cfg["USERNAME"], found.token or cfg["PASSWORD"],
                         cafile=cafile, guard=found.guard)


def _show(args, reply, render):
    out = fmt.to_json(reply) if args.json else render(reply)
    if out:
        print(out)


# --------------------------------------------------------------------------- verbs

def cmd_server(args):
    from . import daemon  # the client side never loads the server unless asked
    return daemon.serve(host=args.host, port=args.port, debug=args.debug or args.verbose >= 2,
                        allow_remote=args.allow_remote)


def cmd_init(args):
    path, created = config.init_file()
    if created:
        print("Wrote %s (USERNAME and a random PASSWORD, mode 0600)." % path)
    else:
        print("%s already holds USERNAME and PASSWORD; left as it is." % path)
    print("Start the ensemble manager with: pegasus-em server")


def cmd_ensembles(api, args):
    _show(args, api.get_json("/ensembles"), fmt.ensembles)


def cmd_create(api, args):
    fields = {"name": args.ensemble, "max_planning": args.max_planning,
              "max_running": args.max_running}
    if args.max_failures is not None:
        fields["max_failures"] = args.max_failures
    api.post_form("/ensembles", fields)


def _set_ensemble_state(api, args, state):
    reply = api.post_form(client.path("ensembles", args.ensemble), {"state": state})
    _show(args, reply, fmt.state)


def cmd_pause(api, args):
    _set_ensemble_state(api, args, EnsembleState.PAUSED)


def cmd_activate(api, args):
    _set_ensemble_state(api, args, EnsembleState.ACTIVE)


def cmd_hold(api, args):
    _set_ensemble_state(api, args, EnsembleState.HELD)


def cmd_config(api, args):
    fields = {k: v for k, v in (("max_planning", args.max_planning),
                                ("max_running", args.max_running),
                                ("max_failures", args.max_failures)) if v is not None}
    _show(args, api.post_form(client.path("ensembles", args.ensemble), fields),
          lambda r: fmt.limits(r, failures=args.max_failures is not None))


def cmd_workflows(api, args):
    reply = api.get_json(client.path("ensembles", args.ensemble, "workflows"))
    _show(args, reply, fmt.workflows_long if args.long else fmt.workflows)


def cmd_submit(api, args):
    fields = {"name": args.workflow, "priority": args.priority, "basedir": os.getcwd(),
              "plan_command": args.plan_command}
    for key in ("after", "run_after"):  # ours: only sent when given, as 5.x never does
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    api.post_form(client.path("ensembles", args.ensemble, "workflows"), fields)


def _workflow_path(args, *rest):
    return client.path("ensembles", args.ensemble, "workflows", args.workflow, *rest)


def cmd_status(api, args):
    _show(args, api.get_json(_workflow_path(args)), fmt.status)


def cmd_analyze(api, args):
    sys.stdout.write(api.get_text(_workflow_path(args, "analyze")))


def _set_workflow(api, args, fields, render):
    _show(args, api.post_form(_workflow_path(args), fields), render)


def cmd_replan(api, args):
    _set_workflow(api, args, {"state": WorkflowState.READY}, fmt.state)


def cmd_rerun(api, args):
    _set_workflow(api, args, {"state": WorkflowState.QUEUED}, fmt.state)


def cmd_abort(api, args):
    _set_workflow(api, args, {"state": WorkflowState.ABORTED}, fmt.aborting)


def cmd_priority(api, args):
    _set_workflow(api, args, {"priority": args.priority}, fmt.priority)


def _trigger_fields(args, kind):
    """5.x's trigger form, plus `basedir` so the trigger's workflows plan from here."""
    fields = {"trigger": args.trigger,
              "workflow_script": os.path.abspath(args.workflow_script),
              "workflow_args": json.dumps(args.script_args), "interval": args.interval}
    if args.timeout is not None:
        fields["timeout"] = args.timeout
    fields.update(type=kind, basedir=os.getcwd())
    return fields


def _warn(reply):
    """What the server created but expects to fail (a trigger whose script is missing)."""
    warning = reply.get("warning") if isinstance(reply, dict) else None
    if warning:
        print("WARNING: %s" % warning, file=sys.stderr)


def cmd_cron_trigger(api, args):
    _warn(api.post_form(client.path("ensembles", args.ensemble, "triggers", "cron"),
                        _trigger_fields(args, "CRON")))


def cmd_file_pattern_trigger(api, args):
    fields = _trigger_fields(args, "FILE_PATTERN")
    fields["file_patterns"] = json.dumps(args.file_patterns)
    _warn(api.post_form(client.path("ensembles", args.ensemble, "triggers", "file_pattern"),
                        fields))


def cmd_triggers(api, args):
    reply = api.get_json(client.path("ensembles", args.ensemble, "triggers"))
    _show(args, reply, fmt.triggers_long if args.long else fmt.triggers)


def cmd_stop_trigger(api, args):
    path = client.path("ensembles", args.ensemble, "triggers", args.trigger)
    reply = api.delete(path + ("?purge=1" if args.purge else ""))
    _show(args, reply, lambda r: fmt.text((r or {}).get("message")))


def cmd_start_trigger(api, args):
    path = client.path("ensembles", args.ensemble, "triggers", args.trigger, "start")
    reply = api.post_form(path, {} if args.timeout is None else {"timeout": args.timeout})
    _show(args, reply, lambda r: fmt.text((r or {}).get("message")))


# --------------------------------------------------------------------------- beyond 5.x

MAX_PAGE = 1000
LAST_ID = 2 ** 31 - 1


def _check_history(args):
    args.parts = args.name.split(".")
    if len(args.parts) > 2 or not all(args.parts):
        raise UsageError("Invalid ENSEMBLE[.WORKFLOW]: %s" % args.name)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")


def _check_watch(args):
    if not args.interval > 0:
        raise UsageError("--interval must be greater than 0")


def cmd_history(api, args):
    parts = args.parts
    path = client.path(*(["ensembles", parts[0]] + (["workflows", parts[1]] if len(parts) == 2
                                                     else []) + ["events"]))
    limit = max(1, min(args.limit, MAX_PAGE))
    if args.all:
        rows = _all_events(api, path)
    elif args.after is not None:
        rows = api.get_json("%s?after=%d&limit=%d" % (path, args.after, limit)) or []
    else:
        rows = api.get_json("%s?before=%d&limit=%d" % (
            path, args.before if args.before is not None else LAST_ID, limit)) or []
    _show(args, rows, lambda r: fmt.history(r, with_workflow=len(parts) == 1))
    if not args.all and len(rows) == limit:
        hint = ("--after %d" % rows[-1]["id"]) if args.after is not None else (
            "--before %d" % rows[0]["id"])
        print("(more: pegasus-em history %s %s)" % (args.name, hint), file=sys.stderr)


def _all_events(api, path):
    rows, after = [], 0
    while True:
        page = api.get_json("%s?after=%d&limit=%d" % (path, after, MAX_PAGE)) or []
        rows.extend(page)
        if len(page) < MAX_PAGE:
            return rows
        after = page[-1]["id"]


def cmd_why(api, args):
    _show(args, api.get_json(_workflow_path(args, "why")), fmt.why)


def cmd_watch(api, args):
    return watch.run(api, args.ensemble, args.interval, args.once)


def cmd_import(api, args):
    path = args.db or os.path.join(config.pegasus_dir(), "workflow.db")
    rows = legacy.read(path)
    body = json.dumps(rows).encode("utf-8")
    _show(args, api.post_json("/import", body), fmt.import_report)
