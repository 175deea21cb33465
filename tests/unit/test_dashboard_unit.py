"""The dashboard's pieces without a server: escaping templates, SVG charts, the
submit-dir browser, CSRF tokens and signed messages, and the package data."""

import configparser
import fnmatch
import os
import re

import pytest

from conftest import REPO
from pegasus_em.core import explain
from pegasus_em.dashboard import browse, charts, dashboard, pages
from pegasus_em.errors import BadRequest, Forbidden, NotFound
from pegasus_em.core.model import Ensemble

EVIL = '<script>alert("x")</script>&\'"'


def test_template_escapes_everything_but_markup():
    t = pages.Template("<p title=\"$a\">$b $c</p>")
    out = t(a=EVIL, b=pages.Markup("<em>ok</em>"), c=None)
    assert out == '<p title="%s"><em>ok</em> </p>' % "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;&quot;"
    assert isinstance(out, pages.Markup)
    assert pages.escape(42) == "42" and pages.escape("plain") == "plain"
    assert pages.Markup("<b>") + "<i>" == "<b>&lt;i&gt;"
    assert pages.attrs(class_="x", data_sort='"', hidden=True, gone=None) == ' class="x" data-sort="&quot;" hidden'


def test_table_cells_and_sort_keys_are_escaped():
    cols = [pages.Column("Name", lambda r: r, key=lambda r: r), pages.Column("Link", lambda r: pages.link("?q=" + r, r))]
    html = pages.table(cols, [EVIL])
    assert "<script>" not in html and 'data-sort="&lt;script&gt;' in html
    assert '<a href="?q=&lt;script&gt;' in html
    assert pages.table(cols, [], empty=EVIL) == '<p class="muted empty">%s</p>' % pages.escape(EVIL)


def test_paths_and_prose_wrap_only_where_they_may():
    """A path wraps after a slash (never inside a name), prose anywhere; both stay escaped."""
    assert pages.breakable("/a/<b>/c") == "/<wbr>a/<wbr>&lt;b&gt;/<wbr>c"
    assert pages.prose('<i a="b">/x') == '<span class="prose">&lt;i a=&quot;b&quot;&gt;/<wbr>x</span>'
    assert pages.breakable(None) == ""
    assert pages.table([pages.Column("A", lambda r: r)], ["x"]).startswith('<div class="scroll"><table ')
    stamp = pages.when(0)
    assert stamp[10] == " " and " " not in stamp[11:] and "\u00a0" in stamp  # the zone stays with the time


def test_page_has_no_inline_script_or_style():
    html = pages.page(EVIL, pages.Markup("<p>body</p>"), crumbs=[(EVIL, "/x?a=1&b=2", False)],
                      nav=[("W", "/w", True)], who=EVIL, css="/c.css", js="/j.js", icon="/i.svg",
                      flash=(False, EVIL), refresh=10)
    assert "<script>alert" not in html and html.count("<script") == 1 and 'src="/j.js"' in html
    assert 'href="/x?a=1&amp;b=2"' in html and 'data-refresh="10"' in html
    assert not re.search(r"\sstyle=|\son\w+=", html)


def test_formatting():
    assert pages.duration(None) == "-" and pages.duration(3.25) == "3.2 s" and pages.duration(65) == "1m 05s"
    assert pages.duration(3 * 3600 + 120) == "3h 02m" and pages.duration(90000) == "1d 01h"
    assert pages.size(100) == "100 B" and pages.size(2048) == "2.0 KiB"
    assert pages.query("/x", a="1", b=None, c="&") == "/x?a=1&c=%26"
    assert pages.when(None) == "-"


def test_charts_are_escaped_svg():
    bars = charts.stacked_bars([(EVIL, [3, 1]), ("b", [0, 2])], [("ok", "ok"), ("failed", "fail")], "Per x")
    assert bars.count("<svg") == 1 and "<script>" not in bars and "&lt;script&gt;" in bars
    assert 'class="fail"' in bars and "<title>" in bars
    cols = charts.columns([(1000.0, [1, 0, 0]), (1060.0, [2, 1, 0])], [("a", "ok"), ("b", "fail"), ("c", "run")],
                          "Over time", 60)
    assert cols.count("<rect") == 3 and "one bar per minute" in cols
    gantt = charts.gantt([(EVIL, [(1.0, 2.0, "queue", "q"), (2.0, 5.0, "run", "r"), (None, None, "post", "p")])],
                         "Gantt")
    assert gantt.count("<rect") == 2 and "&lt;script&gt;" in gantt
    assert "No job" in charts.gantt([], "Gantt")
    bar = charts.status_bar([("ok", 3, "ok"), ("bad", 0, "fail")], "Jobs")
    assert "ok: 3" in bar and "bad: 0" in bar


def test_browser_never_leaves_the_root(tmp_path):
    root = tmp_path / "submit"
    (root / "00").mkdir(parents=True)
    (root / "00" / "a.out").write_text("hello")
    (root / "big").write_bytes(b"x" * (browse.VIEW_BYTES + 10))
    (root / "bin").write_bytes(b"\0\1\2")
    (tmp_path / "secret").write_text("top secret")
    os.symlink("../secret", str(root / "up"))
    os.symlink("00", str(root / "here"))
    os.symlink(str(tmp_path), str(root / "parent"))
    b = browse.Browser(str(root))
    with pytest.raises(BadRequest):
        browse.split("00/../../secret")
    for bad in ("./x", "a\\b", "x\0"):
        with pytest.raises(BadRequest):
            browse.split(bad)
    assert browse.split("/00//a.out/") == ["00", "a.out"]
    for names in (["up"], ["parent", "secret"], ["parent"]):
        with pytest.raises(Forbidden):
            b.read(names)
    assert b.read(["here", "a.out"])[0] == b"hello"
    data, size, truncated = b.read(["big"])
    assert truncated and size == browse.VIEW_BYTES + 10 and len(data) == browse.VIEW_BYTES
    assert browse.is_binary(b.read(["bin"])[0])
    entries = {e["name"]: e for e in b.listing([])}
    assert entries["up"]["outside"] and entries["parent"]["outside"] and not entries["parent"]["dir"]
    assert entries["here"]["dir"] and not entries["here"]["outside"] and entries["00"]["dir"]
    with pytest.raises(NotFound):
        b.read(["missing"])
    with pytest.raises(Forbidden):
        browse.Browser(str(root), owner_uid=os.getuid() + 12345)
    with pytest.raises(NotFound):
        browse.Browser("relative/path")


class FakeReq:
    def __init__(self, home, user="alice", remote_user="alice", form=None, headers=None, origin="https://h"):
        self.home, self.user, self.remote_user = home, user, remote_user
        self._f, self.headers, self.origin = form or {}, headers or {}, origin
        self.write = True
        self.args = {}

    def fields(self):
        return self._f


def test_csrf_tokens_are_bound_to_user_and_time(tmp_path):
    d = dashboard.Dashboard(home_of=lambda u: str(tmp_path))
    req = FakeReq(str(tmp_path))
    token = d.csrf(req, now=1000)
    d.check_csrf(FakeReq(str(tmp_path), form={"csrf": token}), now=1000 + 3600)
    for bad in (FakeReq(str(tmp_path), form={"csrf": token}, remote_user="mallory"),
                FakeReq(str(tmp_path), form={"csrf": token}, user="bob"),
                FakeReq(str(tmp_path), form={"csrf": token[:-1] + ("1" if token[-1] == "0" else "0")}),
                FakeReq(str(tmp_path), form={}),
                FakeReq(str(tmp_path), form={"csrf": token}, headers={"origin": "https://evil"}),
                FakeReq(str(tmp_path), form={"csrf": token}, headers={"sec-fetch-site": "cross-site"})):
        with pytest.raises(Forbidden):
            d.check_csrf(bad, now=1000)
    with pytest.raises(Forbidden):
        d.check_csrf(FakeReq(str(tmp_path), form={"csrf": token}), now=1000 + dashboard.TOKEN_TTL + 1)
    other = dashboard.Dashboard(home_of=lambda u: str(tmp_path))  # another process: its own random key
    with pytest.raises(Forbidden):
        other.check_csrf(FakeReq(str(tmp_path), form={"csrf": token}), now=1000)


def test_csrf_key_comes_from_the_users_settings(tmp_path):
    (tmp_path / ".pegasus").mkdir()
    (tmp_path / ".pegasus" / "service.py").write_text("USERNAME = 'alice'\nPASSWORD = 'pw'\n")
    one, two = (dashboard.Dashboard(home_of=lambda u: str(tmp_path)) for _ in range(2))
    token = one.csrf(FakeReq(str(tmp_path)), now=5000)
    two.check_csrf(FakeReq(str(tmp_path), form={"csrf": token}), now=5000)  # any process serving alice
    req = FakeReq(str(tmp_path))
    req.args = {"flash": one.flash_query(req, True, EVIL)}
    assert two.read_flash(req) == (True, EVIL)
    flash = req.args["flash"]
    req.args["flash"] = flash[:-1] + ("1" if flash[-1] == "0" else "0")
    assert two.read_flash(req) is None


def test_why_a_workflow_waits_in_a_line():
    e = Ensemble(1, "e", "ACTIVE", 2, 2, 0.0, 0.0)
    planning = {"kind": "planning", "limit": 2, "used": 1, "by": ["e.a"]}
    running = {"kind": "running", "limit": 2, "used": 2, "by": ["e.a", "e.b"]}
    assert explain.in_short(e, {"position": 1, "throttle": planning}) == \
        "next in line for a planning slot (1 of 2 in use)"
    assert explain.in_short(e, {"position": 3, "throttle": planning}) == \
        "2 workflow(s) ahead of it for 1 free planning slot(s)"
    assert explain.in_short(e, {"position": 2, "throttle": running}) == \
        "all 2 running slots in use; 1 workflow(s) ahead of it"
    total = dict(running, kind="running_total")
    assert explain.in_short(e, {"position": 1, "throttle": total}) == \
        "all 2 running slots of all ensembles in use"
    assert explain.in_short(e._replace(state="PAUSED"), {"position": 1, "throttle": running}) == \
        "ensemble e is PAUSED: nothing new starts (activate it)"
    deps = [{"name": "e.a", "state": "READY"}, {"name": "x.b", "state": "RUNNING"},
            {"name": "x.c", "state": "SUCCESSFUL"}]
    assert explain.in_short(e, {"dependencies": deps}) == \
        "waiting for 2 workflow(s) it depends on to succeed"
    deps[0]["state"] = "FAILED"
    assert explain.in_short(e, {"dependencies": deps, "blocked_by": "e.a"}) == \
        "blocked: dependency e.a is FAILED"
    assert explain.in_short(e, {"run_after": 400 * 86400}).startswith("not to be planned before 1971-02-0")


def test_static_files_are_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    patterns = cfg["options.package_data"]["pegasus_em.dashboard"].split()
    names = os.listdir(os.path.join(REPO, "pegasus_em", "dashboard", "static"))
    assert names and all(any(fnmatch.fnmatch("static/" + n, p) for p in patterns) for n in names)
    assert set(dashboard.STATIC) == set(names)
    js = open(os.path.join(REPO, "pegasus_em", "dashboard", "static", "dashboard.js")).read()
    assert "innerHTML = fresh.innerHTML" in js and "eval(" not in js and "http" not in js
