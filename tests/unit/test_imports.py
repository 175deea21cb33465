"""Import rules, checked on the source with `ast`: stdlib only at run time, and
layers that only import downwards (the client side never imports the server)."""

import ast
import functools
import importlib.util
import os
import sys
import sysconfig

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "pegasus_em")

# module -> the modules of ours it may import (STYLE.md §7).  A module missing
# here fails the test: every new module must declare its place.
LAYERS = {
    "__init__": set(),
    "errors": set(),
    "web": {"errors"},
    "assets": set(),
    "states": {"errors"},
    "model": {"errors", "states"},
    "config": {"errors"},
    "wire": {"model", "states", "errors"},
    "db": {"errors"},
    "store": {"db", "model", "states", "errors"},
    "auth": {"errors", "config"},
    "transitions": {"store", "states"},
    "ops": {"store", "db", "model", "states", "errors", "explain", "metrics", "importer",
            "transitions"},
    "explain": {"store", "states"},
    "metrics": {"__init__", "store", "states"},
    "importer": {"store", "model", "states", "errors", "planout", "dagstate"},
    "notify": {"__init__", "loops", "store"},
    "api": {"ops", "wire", "errors", "auth", "states", "web"},
    "httpd": {"errors", "config", "loops", "web"},
    "loops": set(),
    "policy": {"model", "states"},
    "manager": {"ops", "store", "db", "policy", "runner", "planout", "dagstate", "errors",
                "model", "states", "loops", "transitions"},
    "triggers": {"ops", "store", "db", "model", "states", "errors", "loops"},
    "retention": {"loops", "store", "manager"},
    "daemon": {"__init__", "config", "api", "auth", "db", "errors", "httpd", "ops", "store",
               "states", "wire", "model", "manager", "runner", "triggers", "notify", "loops",
               "retention"},
    "client": {"__init__", "errors", "config"},
    "fmt": set(),
    "cli": {"__init__", "client", "fmt", "config", "errors", "states", "model", "daemon",
            "legacy", "watch"},
    "legacy": {"errors"},
    "watch": {"client", "fmt", "errors", "states"},
    "__main__": {"cli"},
    "pservice": {"__init__", "config", "errors", "pam", "tls", "auth", "httpd", "service_app",
                 "switch", "userapp", "loops"},
    "pam": {"errors"},
    "tls": {"errors", "loops"},
    "owned": {"errors"},
    "masterdb": {"errors", "owned"},
    "apiquery": {"errors"},
    "monitoring": {"apiquery", "errors", "masterdb", "owned", "web"},
    "emproxy": {"config", "client", "errors"},
    "userapp": {"emproxy", "errors", "monitoring", "dashboard", "web"},
    "switch": {"errors", "userapp", "loops", "web"},
    "service_app": {"errors", "userapp", "assets", "web"},
    "runner": {"errors"},
    "planout": {"errors"},
    "dagstate": {"errors", "runner"},
    # the dashboard (issue 6)
    "pages": {"fmt"},
    "charts": {"pages"},
    "browse": {"errors", "owned"},
    "stampede": {"dagstate", "errors", "masterdb", "owned"},
    "ensview": {"db", "store", "explain", "errors", "masterdb", "states", "owned"},
    "dashpage": {"assets", "pages", "web", "errors"},
    "wfpages": {"browse", "charts", "pages", "stampede", "errors", "masterdb", "dashpage"},
    "statspages": {"charts", "pages", "errors", "dashpage"},
    "feeds": {"browse", "pages", "stampede", "errors", "__init__", "dashpage"},
    "empages": {"pages", "ensview", "errors", "masterdb", "states", "dashpage"},
    "dashboard": {"assets", "web", "config", "ensview", "pages", "stampede", "emproxy",
                  "empages", "errors", "dashpage",
                  "masterdb", "states", "wfpages", "statspages", "feeds"},
}
CLIENT_SIDE = {"client", "fmt", "cli", "__main__", "legacy", "watch"}
SERVER_SIDE = {"web", "assets", "db", "store", "ops", "api", "httpd", "daemon", "auth", "wire",
               "pam", "tls",
               "explain", "metrics", "importer", "notify", "retention", "transitions",
               "masterdb", "apiquery", "owned", "monitoring", "emproxy", "userapp", "switch",
               "service_app", "pservice", "browse", "stampede", "ensview", "wfpages", "empages",
               "dashboard", "dashpage", "statspages", "feeds"}
LAZY_ALLOWED = {("cli", "daemon")}  # `pegasus-em server` imports the daemon inside a function


@functools.lru_cache(maxsize=None)
def module_paths():
    """module name -> file, for every module of the package (names are unique across its
    folders; a folder's __init__ holds a docstring only)."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py") and not (f == "__init__.py" and root != PACKAGE):
                assert f[:-3] not in found, "two modules named %s" % f[:-3]
                found[f[:-3]] = os.path.join(root, f)
    return found


def modules():
    return sorted(module_paths())


def _resolve(folder, node):
    """The module names of ours an ImportFrom reaches ("__init__" for the package)."""
    parts = folder[:len(folder) - (node.level - 1)] if node.level > 1 else list(folder)
    base = parts + (node.module.split(".") if node.module else [])
    paths = module_paths()
    names = []
    for a in node.names:
        target = os.path.join(PACKAGE, *base, a.name) + ".py"
        if a.name in paths and paths[a.name] == target:
            names.append(a.name)
        elif base and os.path.isfile(os.path.join(PACKAGE, *base) + ".py"):
            names.append(base[-1])
        else:
            names.append("__init__")
    return names


def folder_of(module):
    """The folders below the package that hold `module` ([] at the top)."""
    folder = os.path.relpath(os.path.dirname(module_paths()[module]), PACKAGE)
    return [] if folder == "." else folder.split(os.sep)


def imports(module):
    """(name, top_level) for each import; those of ours as "pegasus_em.<module>"."""
    folder = folder_of(module)
    with open(module_paths()[module]) as f:
        tree = ast.parse(f.read())
    top_level = set(id(n) for n in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found += [("pegasus_em." + n, id(node) in top_level) for n in _resolve(folder, node)]
            elif node.module.split(".")[0] == "pegasus_em":
                found.append(("pegasus_em." + node.module.split(".")[-1], id(node) in top_level))
            else:
                found.append((node.module, id(node) in top_level))
    return found


def test_package_folders_hold_only_docstrings():
    for root, _, files in os.walk(PACKAGE):
        if root != PACKAGE and "__init__.py" in files:
            with open(os.path.join(root, "__init__.py")) as f:
                tree = ast.parse(f.read())
            assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), root


def test_every_module_has_a_declared_layer():
    assert set(modules()) <= set(LAYERS), set(modules()) - set(LAYERS)


@pytest.mark.parametrize("module", modules())
def test_runtime_imports_are_standard_library(module):
    for name, _ in imports(module):
        top = name.split(".")[0]
        assert top == "pegasus_em" or is_stdlib(top), "%s imports %s" % (module, name)


def is_stdlib(top):
    if hasattr(sys, "stdlib_module_names"):  # Python 3.10+
        return top in sys.stdlib_module_names
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    return (spec.origin.startswith(sysconfig.get_paths()["stdlib"])
            and "site-packages" not in spec.origin)


@pytest.mark.parametrize("module", modules())
def test_imports_follow_the_layers(module):
    for name, top_level in imports(module):
        if not name.startswith("pegasus_em"):
            continue
        target = name.split(".", 1)[1] if "." in name else "__init__"
        if (module, target) in LAZY_ALLOWED and not top_level:
            continue
        assert target in LAYERS.get(module, set()), "%s may not import %s" % (module, target)


@pytest.mark.parametrize("module", sorted(CLIENT_SIDE))
def test_client_side_never_imports_server_side_at_import_time(module):
    if module not in module_paths():
        pytest.skip("no %s module" % module)
    for name, top_level in imports(module):
        target = name.split(".", 1)[-1]
        if top_level:
            assert target not in SERVER_SIDE, "%s imports %s" % (module, target)


def test_readme_module_map_names_every_module_once():
    """The README's module map is the layout a newcomer reads: it must be the one on disk."""
    readme = open(os.path.join(os.path.dirname(PACKAGE), "README.md")).read()
    block = readme.split("### Module map", 1)[1].split("```\n", 2)[1]
    listed, folder = [], ""
    for line in block.splitlines():
        name = line.split()[0]
        if name.endswith("/"):
            folder = "" if name == "pegasus_em/" else name
        elif name.endswith(".py"):
            listed.append(folder + name)
    on_disk = sorted(os.path.relpath(path, PACKAGE) for path in module_paths().values())
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed))


FOLDER_ORDER = ["", "core", "web", "em", "dashboard", "service"]  # as the README's map


def _rank(module):
    return FOLDER_ORDER.index("/".join(folder_of(module)))


def test_folders_import_only_their_own_and_earlier_ones():
    wrong = []
    for module in modules():
        mine = _rank(module)
        for name, _ in imports(module):
            target = name.split(".", 1)[1] if name.startswith("pegasus_em.") else None
            if target in module_paths() and module != "__main__" and _rank(target) > mine:
                wrong.append("%s imports %s" % (module, target))
    assert not wrong
