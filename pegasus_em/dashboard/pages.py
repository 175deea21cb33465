"""HTML for the dashboard: an escaping template over string.Template and the
few building blocks every page uses.

Every value put into a page goes through `escape` unless it is `Markup`
(HTML made here from escaped parts), so markup in a workflow label, a file
name or a job's stderr shows as text.  No inline scripts, styles or event
handlers: the Content-Security-Policy forbids them.
"""

import html
import re
import string
import urllib.parse

from .. import fmt

_special = re.compile(r"[&<>\"']").search


def _escape(text, quote=True):
    """html.escape, skipped for the common text that has nothing to escape."""
    return html.escape(text, quote) if _special(text) else text



class Markup(str):
    """A string that is already HTML."""

    __slots__ = ()

    def __add__(self, other):
        return Markup(str.__add__(self, escape(other)))


def escape(value):
    """HTML text of any value: Markup as is, None as empty, anything else escaped."""
    kind = type(value)
    if kind is Markup:
        return value
    if kind is str:
        return Markup(_escape(value, True))
    if value is None:
        return _EMPTY
    if isinstance(value, Markup):
        return value
    return Markup(_escape(str(value), True))


_EMPTY = Markup("")


def breakable(text):
    """Escaped text that may wrap after each '/': a long path wraps between its parts,
    never inside a name."""
    return Markup(escape(text).replace("/", "/<wbr>"))


def prose(text):
    """Free text (a reason, an error) in a table: it may break inside a long token, such as
    a Java class name, rather than widen the table past the window."""
    return Markup('<span class="prose">%s</span>' % breakable(text))


def join(parts, sep=""):
    return Markup(escape(sep).join(escape(p) for p in parts))


class Template:
    """string.Template whose substitutions are escaped (Markup passes through)."""

    __slots__ = ("_template",)

    def __init__(self, text):
        self._template = string.Template(text)

    def __call__(self, **values):
        return Markup(self._template.substitute({k: escape(v) for k, v in values.items()}))


# ---- small pieces ------------------------------------------------------------------------

def attrs(**values):
    """ class_="x" data_sort="3" -> ' class="x" data-sort="3"' (None and False are left out)."""
    out = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        out.append(' %s' % name if value is True else ' %s="%s"' % (name, escape(value)))
    return Markup("".join(out))


def tag(name, content="", **values):
    return Markup("<%s%s>%s</%s>" % (name, attrs(**values), escape(content), name))


def link(href, text, **values):
    if values:
        return Markup('<a href="%s"%s>%s</a>' % (escape(href), attrs(**values), escape(text)))
    return Markup('<a href="%s">%s</a>' % (escape(href), escape(text)))


_BADGES = {}


def state_badge(state, text=None):
    key = (state, text)
    found = _BADGES.get(key)
    if found is None:
        cls = "state s-" + "".join(c if c.isalnum() else "-" for c in str(state).lower())
        found = Markup('<span class="%s">%s</span>' % (escape(cls), escape(text or state)))
        if len(_BADGES) < 1000:
            _BADGES[key] = found
    return found


def notice(text, kind="info"):
    return Markup('<p class="notice %s" role="%s">%s</p>'
                  % (escape(kind), "alert" if kind == "error" else "status", escape(text)))


def pre(text, cls="output"):
    if text is None or text == "":
        return Markup('<p class="muted">(empty)</p>')
    return Markup('<pre class="%s">%s</pre>' % (escape(cls), escape(text)))


def dl(pairs):
    """A definition list of (label, value) pairs; values may be Markup."""
    rows = "".join("<dt>%s</dt><dd>%s</dd>"
                   % (escape(k), escape(v if v not in (None, "") else "-")) for k, v in pairs)
    return Markup('<dl class="facts">%s</dl>' % rows)


def section(title, body, id_=None):
    return Markup('<section%s><h2>%s</h2>%s</section>'
                  % (attrs(id=id_), escape(title), escape(body)))


class Column:
    """A table column: heading, how a row gives its cell, and its sort key."""

    __slots__ = ("title", "cell", "key", "numeric")

    def __init__(self, title, cell, key=None, numeric=False):
        self.title, self.cell, self.key, self.numeric = title, cell, key, numeric


def table(columns, rows, cls="grid", sortable=True, empty="Nothing to show.", caption=None):
    """A table; each cell is escaped unless Markup.  `sortable` lets dashboard.js sort it
    (a column's `key(row)` becomes data-sort)."""
    if not rows:
        return Markup('<p class="muted empty">%s</p>' % escape(empty))
    head = "".join('<th scope="col"%s>%s</th>'
                   % (' class="num"' if c.numeric else "", escape(c.title)) for c in columns)
    # In a scrolling box: a table that cannot fit scrolls rather than break words.
    out = ['<div class="scroll"><table class="%s%s">'
           % (escape(cls), " sortable" if sortable else "")]
    if caption:
        out.append("<caption>%s</caption>" % escape(caption))
    out.append("<thead><tr>%s</tr></thead><tbody>" % head)
    append = out.append
    plan = [(c.cell, c.key, ' class="num"' if c.numeric else "") for c in columns]
    for row in rows:
        cells = []
        for cell, key, cls_attr in plan:
            value = cell(row)
            if type(value) is not Markup:
                value = escape(value)
            if key is None:
                cells.append(f"<td{cls_attr}>{value}</td>")
            else:
                cells.append(f'<td{cls_attr} data-sort="{_escape(str(key(row)))}">{value}</td>')
        append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return Markup("".join(out))


def cards(items):
    """Header counters: (label, number, href or None, css class, current)."""
    out = ['<ul class="cards">']
    for label, number, href, cls, current in items:
        inner = ('<span class="n">%s</span><span class="l">%s</span>'
                 % (escape(number), escape(label)))
        if href:
            inner = '<a href="%s"%s>%s</a>' % (escape(href), ' aria-current="true"' if current
                                               else "", inner)
        out.append('<li class="card %s">%s</li>' % (escape(cls), inner))
    out.append("</ul>")
    return Markup("".join(out))


def tabs(items):
    """(label, count or None, href, current) -> a row of tab links."""
    out = ['<nav class="tabs" aria-label="Sections"><ul>']
    for label, count, href, current in items:
        text = escape(label) + (Markup(' <span class="count">%s</span>' % escape(count))
                                if count is not None else "")
        out.append('<li><a href="%s"%s>%s</a></li>'
                   % (escape(href), ' aria-current="page"' if current else "", text))
    out.append("</ul></nav>")
    return Markup("".join(out))


def pager(total, offset, limit, href_for):
    """'Showing a-b of n' with previous/next links; `href_for(offset)`."""
    if total <= limit and offset == 0:
        return Markup("")
    parts = ['<nav class="pager" aria-label="Pages"><span>%s&ndash;%s of %s</span>'
             % (escape(min(total, offset + 1)), escape(min(total, offset + limit)), escape(total))]
    if offset > 0:
        parts.append(link(href_for(max(0, offset - limit)), "\u2190 previous", rel="prev"))
    if offset + limit < total:
        parts.append(link(href_for(offset + limit), "next \u2192", rel="next"))
    parts.append("</nav>")
    return Markup(" ".join(parts))


def hidden(name, value):
    return Markup('<input type="hidden" name="%s" value="%s">' % (escape(name), escape(value)))


def action_form(action, csrf, button, fields=(), cls="act", danger=False, extra=""):
    """A POST form with its CSRF token (none: no form); `fields` are (name, value) hidden
    inputs."""
    if csrf is None:
        return Markup("")
    inputs = "".join(hidden(k, v) for k, v in fields)
    return Markup('<form method="post" action="%s" class="%s">%s%s%s'
                  '<button type="submit"%s>%s</button></form>'
                  % (escape(action), escape(cls), hidden("csrf", csrf), inputs, escape(extra),
                     ' class="danger"' if danger else "", escape(button)))


# ---- formatting --------------------------------------------------------------------------

def when(ts):
    """Server local time of an epoch, '-' for None; it may wrap after the date, never
    before the time zone."""
    if ts is None or ts == "":
        return "-"
    text = fmt.local_time(ts)
    if text is None:
        return str(ts)
    stamp, _, zone = text.rpartition(" ")
    return stamp + "\u00a0" + zone if zone else stamp


def duration(seconds):
    """3.2 s, 4m 05s, 2h 03m, 3d 04h; '-' for None."""
    if seconds is None or seconds == "":
        return "-"
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if s < 60:
        return "%.1f s" % s if s < 10 else "%d s" % round(s)
    s = int(round(s))
    if s < 3600:
        return "%dm %02ds" % divmod(s, 60)
    if s < 86400:
        return "%dh %02dm" % (s // 3600, s % 3600 // 60)
    return "%dd %02dh" % (s // 86400, s % 86400 // 3600)


def number(value, digits=2):
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return "%.*f" % (digits, value)
    try:
        return "{:,}".format(int(value))
    except (TypeError, ValueError):
        return str(value)


def size(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return "%d %s" % (n, unit) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0
    return str(n)


def query(href, **params):
    """href with its query string replaced by `params` (None values dropped)."""
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return href + ("?" + urllib.parse.urlencode(clean) if clean else "")


# ---- the page ----------------------------------------------------------------------------

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title &middot; Pegasus</title>
<link rel="icon" href="$icon" type="image/svg+xml">
<link rel="stylesheet" href="$css">
<script src="$js" defer></script>
</head>
<body>
<header class="top">
<a class="brand" href="$home">Pegasus</a>
<nav aria-label="Main"><ul>$nav</ul></nav>
<span class="who">$who</span>
</header>
<main id="main"$refresh>
<nav class="crumbs" aria-label="Breadcrumbs">$crumbs</nav>
<h1>$heading</h1>
$flash$body
</main>
<footer>$footer</footer>
</body>
</html>
""")


def page(title, body, crumbs=(), nav=(), who="", css="", js="", home="", flash=None, refresh=None,
         heading=None, footer="", icon=""):
    """The whole document; `crumbs` and `nav` are (text, href, current) triples."""
    crumb_html = Markup(' <span class="sep">/</span> '.join(
        str(link(h, t) if h else tag("span", t)) for t, h, _ in crumbs))
    nav_html = join(Markup("<li>%s</li>" % link(h, t, aria_current="page" if cur else None))
                    for t, h, cur in nav)
    flash_html = notice(flash[1], "ok" if flash[0] else "error") if flash else Markup("")
    return PAGE(title=title, css=css, js=js, icon=icon, home=home, nav=nav_html, who=who,
                crumbs=crumb_html, heading=heading if heading is not None else title,
                flash=flash_html, body=body, refresh=attrs(data_refresh=refresh), footer=footer)
