"""Charts as inline SVG made on the server: no script, no external library.

Colours come from CSS classes (static/dashboard.css), hover text from <title>
elements, and every chart has a text title and a legend, so it reads without
colour or a pointer.  All text is escaped.
"""

import time

from .pages import Markup, escape

ROW = 22      # px per bar row
LABEL = 190   # px for row labels
PAD = 8


def _svg(width, height, title, body, cls="chart"):
    return Markup('<figure class="%s"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" '
                  'width="%d" height="%d" role="img" aria-label="%s"><title>%s</title>%s</svg>'
                  '<figcaption>%s</figcaption></figure>'
                  % (escape(cls), width, height, width, height, escape(title), escape(title), body,
                     escape(title)))


def legend(series):
    items = "".join('<li><span class="swatch %s"></span>%s</li>' % (escape(cls), escape(name))
                    for name, cls in series)
    return Markup('<ul class="legend">%s</ul>' % items)


def _f(x):
    return "%.1f" % x


def status_bar(parts, title, width=640):
    """One stacked bar of counts: [(name, n, css class)], with a legend giving the numbers."""
    total = sum(n for _, n, _ in parts) or 1
    x, rects = 0.0, []
    for name, n, cls in parts:
        if n <= 0:
            continue
        w = width * n / total
        rects.append('<rect class="%s" x="%s" y="0" width="%s" height="24">'
                     '<title>%s: %d</title></rect>' % (escape(cls), _f(x), _f(w), escape(name), n))
        x += w
    if not rects:
        rects.append('<rect class="empty" x="0" y="0" width="%d" height="24">'
                     '<title>no jobs</title></rect>' % width)
    key = legend([("%s: %d" % (name, n), cls) for name, n, cls in parts])
    return Markup(_svg(width, 24, title, Markup("".join(rects)), "chart bar")) + key


def stacked_bars(rows, series, title, width=720):
    """Horizontal bars, one per row: rows = [(label, [value per series])], series =
    [(name, css class)]; the total is written after each bar."""
    if not rows:
        return Markup('<p class="muted">No data for %s.</p>' % escape(title.lower()))
    top = max(sum(v) for _, v in rows) or 1
    area = width - LABEL - 60
    out = []
    for i, (label, values) in enumerate(rows):
        y = PAD + i * ROW
        out.append('<text class="label" x="%d" y="%d" text-anchor="end">%s</text>'
                   % (LABEL - 6, y + 15, escape(_clip(label, 28))))
        x = float(LABEL)
        for (name, cls), v in zip(series, values):
            if v <= 0:
                continue
            w = area * v / top
            out.append('<rect class="%s" x="%s" y="%d" width="%s" height="16">'
                       '<title>%s, %s: %s</title></rect>'
                       % (escape(cls), _f(x), y + 3, _f(max(w, 1.0)), escape(label), escape(name),
                          escape(v)))
            x += w
        out.append('<text class="value" x="%s" y="%d">%s</text>'
                   % (_f(x + 4), y + 15, escape(sum(values))))
    height = 2 * PAD + len(rows) * ROW
    return _svg(width, height, title, Markup("".join(out))) + legend(series)


def columns(buckets, series, title, bucket_seconds, width=720, height=220):
    """Vertical bars over time: buckets = [(start epoch, [value per series])]."""
    if not buckets:
        return Markup('<p class="muted">No data for %s.</p>' % escape(title.lower()))
    t0 = buckets[0][0]
    n = int(round((buckets[-1][0] - t0) / bucket_seconds)) + 1
    top = max(sum(v) for _, v in buckets) or 1
    left, bottom = 40, 30
    plot_w, plot_h = width - left - PAD, height - bottom - PAD
    bw = min(plot_w / max(n, 1), 48.0)
    base = PAD + plot_h
    tick = '<text class="tick" x="%d" y="%d" text-anchor="end">%s</text>'
    axis = '<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>' % (left, base, width - PAD, base)
    out = [axis, tick % (left - 4, PAD + 10, escape("%.3g" % top)), tick % (left - 4, base, 0)]
    for start, values in buckets:
        i = int(round((start - t0) / bucket_seconds))
        x = left + i * bw
        y = PAD + plot_h
        for (name, cls), v in zip(series, values):
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            out.append('<rect class="%s" x="%s" y="%s" width="%s" height="%s">'
                       '<title>%s: %s %s</title></rect>'
                       % (escape(cls), _f(x + 1), _f(y), _f(max(bw - 2, 1)), _f(h),
                          escape(_clock(start)), escape(v), escape(name)))
    for i in _ticks(n, bw):
        out.append('<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>'
                   % (_f(left + (i + 0.5) * bw), height - 10,
                      escape(_clock(t0 + i * bucket_seconds))))
    caption = "%s (one bar per %s)" % (title, _per(bucket_seconds))
    return _svg(width, height, caption, Markup("".join(out))) + legend(series)


def gantt(rows, title, width=720):
    """rows = [(label, [(start, end, css class, what)])]: one line per job instance, each
    span in a lane of its own (they overlap: the tasks run inside the HTCondor job)."""
    spans = [s for _, segs in rows for s in segs if s[0] is not None and s[1] is not None]
    if not spans:
        return Markup('<p class="muted">No job has started yet.</p>')
    t0 = min(float(s[0]) for s in spans)
    t1 = max(float(s[1]) for s in spans)
    scale = (width - LABEL - PAD) / max(t1 - t0, 1e-6)
    lanes = max(len(segs) for _, segs in rows)
    lane = max(16.0 / lanes, 3.0)
    row_h = int(lane * lanes) + 6
    out = []
    for i, (label, segs) in enumerate(rows):
        y = PAD + i * row_h
        out.append('<text class="label" x="%d" y="%s" text-anchor="end">%s</text>'
                   % (LABEL - 6, _f(y + row_h / 2 + 4), escape(_clip(label, 28))))
        for n, (start, end, cls, what) in enumerate(segs):
            if start is None or end is None:
                continue
            x = LABEL + (float(start) - t0) * scale
            w = max((float(end) - float(start)) * scale, 1.5)
            out.append('<rect class="%s" x="%s" y="%s" width="%s" height="%s">'
                       '<title>%s %s: %s</title></rect>'
                       % (escape(cls), _f(x), _f(y + 3 + n * lane), _f(w), _f(lane),
                          escape(label), escape(what),
                          escape("%.1f s" % (float(end) - float(start)))))
    height = 2 * PAD + len(rows) * row_h + 16
    out.append('<text class="tick" x="%d" y="%d">%s</text>'
               % (LABEL, height - 4, escape(_clock(t0))))
    out.append('<text class="tick" x="%d" y="%d" text-anchor="end">+%s</text>'
               % (width - PAD, height - 4, escape("%.1f s" % (t1 - t0))))
    return _svg(width, height, title, Markup("".join(out)), "chart gantt")


def _ticks(n, bar_width, room=110.0):
    """Which bars get a time label: first, middle and last, as far as they do not overlap."""
    shown = []
    for i in sorted({0, n // 2, n - 1}):
        if not shown or (i - shown[-1]) * bar_width >= room:
            shown.append(i)
    return shown


def _clip(text, n):
    text = str(text)
    return text if len(text) <= n else text[:n - 1] + "\u2026"


def _clock(ts):
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


def _per(seconds):
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= n and seconds % n == 0:
            return unit if seconds == n else "%d %ss" % (seconds // n, unit)
    return "second" if seconds == 1 else "%d seconds" % seconds
