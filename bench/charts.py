#!/usr/bin/env python3
"""Draws the charts of docs/PERFORMANCE.md from a `scripts/bench --peers` JSON:

  peers.svg        req/s and p99 of the shop, the Flask peer and the floor
  cpu.svg          CPU per request of each server's own processes, bare and as a browser asks
  connections.svg  logged-in GET / at 1..512 connections: req/s, p50/p99/p99.9
  memory.svg       Redis memory per session and per cart line at 10k..1M sessions

Hand-written SVG, the standard library only:
    python3 bench/charts.py bench/results/latest.json docs/charts
    python3 bench/charts.py --markdown bench/results/latest.json   # the tables
"""

import json
import math
import os
import sys
from html import escape

W, H = 760, 330
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'
COLORS = {"shop": "#1f6feb", "floor": "#6e7781", "flask": "#d4a72c", "p50": "#2da44e", "p99": "#1f6feb",
          "p99.9": "#cf222e", "session": "#1f6feb", "cart": "#d4a72c", "line": "#2da44e", "total": "#8250df"}
LABELS = {"shop": "storefront", "floor": "floor (axum + fred)", "flask": "Flask + Flask-Session"}


class Svg:
    def __init__(self, width, height, title, subtitle=""):
        self.width, self.height = width, height
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="t d">',
            f'<title id="t">{escape(title)}</title><desc id="d">{escape(subtitle)}</desc>',
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            self.text(16, 24, title, size=15, weight="600"),
        ]
        if subtitle:
            self.parts.append(self.text(16, 42, subtitle, size=11, fill="#57606a"))

    @staticmethod
    def text(x, y, s, size=11, anchor="start", fill="#24292f", weight="normal", rotate=None):
        transform = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        return (f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" text-anchor="{anchor}" '
                f'fill="{fill}" font-weight="{weight}"{transform}>{escape(str(s))}</text>')

    def add(self, s):
        self.parts.append(s)

    def save(self, path):
        with open(path, "w") as f:
            f.write("\n".join(self.parts + ["</svg>"]) + "\n")


def nice_max(v):
    """The top of a linear axis with 4 round steps."""
    if v <= 0:
        return 4
    raw = v / 4
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if raw <= m * exp)
    return step * 4


def human(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


class Panel:
    """A plot area with a linear or log y axis and categorical or log x positions."""

    def __init__(self, svg, x, y, w, h, ymax, ylog=False, ymin=None, ylabel=""):
        self.svg, self.x, self.y, self.w, self.h = svg, x, y, w, h
        self.ylog = ylog
        if ylog:
            self.ymin = 10 ** math.floor(math.log10(ymin))
            self.ymax = 10 ** math.ceil(math.log10(ymax))
        else:
            self.ymin, self.ymax = 0, nice_max(ymax)
        self.ylabel = ylabel
        self._axes()

    def sy(self, v):
        if self.ylog:
            v = max(v, self.ymin)
            f = (math.log10(v) - math.log10(self.ymin)) / (math.log10(self.ymax) - math.log10(self.ymin))
        else:
            f = (v - self.ymin) / (self.ymax - self.ymin)
        return self.y + self.h - f * self.h

    def _axes(self):
        s = self.svg
        if self.ylog:
            ticks = [10 ** e for e in range(round(math.log10(self.ymin)), round(math.log10(self.ymax)) + 1)]
        else:
            ticks = [self.ymax * i / 4 for i in range(5)]
        for t in ticks:
            yy = self.sy(t)
            s.add(f'<line x1="{self.x}" y1="{yy:.1f}" x2="{self.x + self.w}" y2="{yy:.1f}" stroke="#d8dee4" '
                  f'stroke-width="1"/>')
            s.add(s.text(self.x - 6, yy + 4, human(t), size=10, anchor="end", fill="#57606a"))
        s.add(f'<line x1="{self.x}" y1="{self.y + self.h}" x2="{self.x + self.w}" y2="{self.y + self.h}" '
              f'stroke="#57606a"/>')
        if self.ylabel:
            s.add(s.text(self.x - 42, self.y + self.h / 2, self.ylabel, size=11, anchor="middle", fill="#57606a",
                         rotate=-90))

    def xcats(self, labels):
        step = self.w / len(labels)
        xs = [self.x + step * (i + 0.5) for i in range(len(labels))]
        for xx, label in zip(xs, labels):
            self.svg.add(self.svg.text(xx, self.y + self.h + 16, label, size=10, anchor="middle", fill="#57606a"))
        return xs, step

    def line(self, xs, values, color, label=None, dash=False):
        values = [v if v and (v > 0 or not self.ylog) else None for v in values]
        pts = " ".join(f"{x:.1f},{self.sy(v):.1f}" for x, v in zip(xs, values) if v is not None)
        extra = ' stroke-dasharray="5 4"' if dash else ""
        self.svg.add(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"{extra}/>')
        for x, v in zip(xs, values):
            if v is not None:
                self.svg.add(f'<circle cx="{x:.1f}" cy="{self.sy(v):.1f}" r="3" fill="{color}">'
                             f'<title>{escape(label or "")}: {v:g}</title></circle>')


def legend(svg, x, y, items):
    for i, (label, color, dash) in enumerate(items):
        yy = y + i * 16
        extra = ' stroke-dasharray="5 4"' if dash else ""
        svg.add(f'<line x1="{x}" y1="{yy}" x2="{x + 18}" y2="{yy}" stroke="{color}" stroke-width="3"{extra}/>')
        svg.add(svg.text(x + 24, yy + 4, label, size=11))


def bar_group(svg, panel, labels, series, fmt):
    """Grouped bars: labels along x, series = [(name, color, [values])]."""
    xs, step = panel.xcats(labels)
    bw = step * 0.7 / len(series)
    for i, x in enumerate(xs):
        for j, (name, color, values) in enumerate(series):
            v = values[i]
            if v is None:
                continue
            bx = x - step * 0.35 + j * bw
            top = panel.sy(v)
            base = panel.y + panel.h
            svg.add(f'<rect x="{bx:.1f}" y="{top:.1f}" width="{bw - 3:.1f}" height="{max(base - top, 1):.1f}" '
                    f'fill="{color}"><title>{escape(name)}: {v:g}</title></rect>')
            svg.add(svg.text(bx + (bw - 3) / 2, top - 4, fmt(v), size=10, anchor="middle"))


# ------------------------------------------------------------------ the three charts

def conditions(res, loads=None):
    s = res["settings"]
    if loads is None:
        loads = [r["other_load_percent"] for t in res.get("peers", {}).get("workloads", {}).values()
                 for r in t.values()]
    load = f" (other processes: up to {max(loads):.0f} % of it)" if loads and max(loads) >= 5 else ""
    return (f"{res['machine']['nproc']} cores shared by wrk, Redis and the server{load}; {res['date'][:16]} UTC; "
            f"commit {res['versions'].get('git_commit')}{' (dirty)' if res['versions'].get('git_dirty') else ''}; "
            f"wrk -c{s['connections']}, {s['seconds']}s")


def peers_chart(res, path):
    p = res["peers"]
    order = [k for k in ("shop", "floor", "flask") if k in p["workloads"]]
    workloads = [("get_home_user", "GET / (logged in, 3-item cart)"), ("post_cart_add", "POST /cart/add")]
    svg = Svg(W, H, "Shop, floor and the Flask-Session peer on the same Redis", conditions(res))
    rps_max = max(p["workloads"][k][w]["rps"] for k in order for w, _ in workloads)
    left = Panel(svg, 70, 70, 300, 200, rps_max * 1.1, ylabel="requests / s")
    bar_group(svg, left, [t for _, t in workloads],
              [(LABELS[k], COLORS[k], [p["workloads"][k][w]["rps"] for w, _ in workloads]) for k in order],
              lambda v: f"{v:,.0f}")
    svg.add(svg.text(220, 64, "throughput (higher is better)", size=11, anchor="middle", fill="#57606a"))
    p99 = [p["workloads"][k][w]["p99_ms"] for k in order for w, _ in workloads]
    right = Panel(svg, 450, 70, 290, 200, max(p99), ylog=True, ymin=min(p99), ylabel="p99 latency, ms (log)")
    bar_group(svg, right, [t for _, t in workloads],
              [(LABELS[k], COLORS[k], [p["workloads"][k][w]["p99_ms"] for w, _ in workloads]) for k in order],
              lambda v: f"{v:.3g}")
    svg.add(svg.text(595, 64, "p99 latency (lower is better)", size=11, anchor="middle", fill="#57606a"))
    for i, k in enumerate(order):
        x = 70 + i * 210
        svg.add(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{COLORS[k]}"/>')
        svg.add(svg.text(x + 18, H - 12, LABELS[k], size=11))
    svg.save(path)


CPU_WORKLOADS = [("get_home_user", "GET / (logged in)"), ("get_home_user_browser", "GET /, browser"),
                 ("post_cart_add", "POST /cart/add"), ("post_cart_add_browser", "add, browser"),
                 ("get_stylesheet_browser", "stylesheet, browser")]


def cpu_chart(res, path):
    p = res["peers"]
    order = [k for k in ("shop", "floor", "flask") if k in p["workloads"]]
    workloads = [(w, t) for w, t in CPU_WORKLOADS if any(w in p["workloads"][k] for k in order)]

    def cpu(k, w):
        r = p["workloads"][k].get(w)
        return r["cpu_us_per_request"].get("app") if r else None
    values = [v for k in order for w, _ in workloads if (v := cpu(k, w))]
    svg = Svg(W, H, "CPU per request of each server's own processes (lower is better)",
              conditions(res) + "; browser: cookie + Accept-Encoding")
    panel = Panel(svg, 80, 70, 650, 200, max(values), ylog=True, ymin=min(values), ylabel="µs per request (log)")
    bar_group(svg, panel, [t for _, t in workloads],
              [(LABELS[k], COLORS[k], [cpu(k, w) for w, _ in workloads]) for k in order],
              lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.3g}")
    for i, k in enumerate(order):
        x = 80 + i * 210
        svg.add(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{COLORS[k]}"/>')
        svg.add(svg.text(x + 18, H - 12, LABELS[k], size=11))
    svg.save(path)


def connections_chart(res, path):
    c = res["connection_curve"]
    targets = c["targets"]
    conns = [pt["connections"] for pt in next(iter(targets.values()))]
    svg = Svg(W, H, "Logged-in GET / as connections grow",
              f"{c['seconds']}s per point; " + conditions(
                  res, [pt["other_load_percent"] for pts in targets.values() for pt in pts]).rsplit(";", 1)[0])
    rps_max = max(pt["rps"] for pts in targets.values() for pt in pts)
    left = Panel(svg, 70, 70, 290, 200, rps_max * 1.1, ylabel="requests / s")
    xs, _ = left.xcats([str(n) for n in conns])
    for label, pts in targets.items():
        left.line(xs, [pt["rps"] for pt in pts], COLORS[label], LABELS[label], dash=label != "shop")
    svg.add(svg.text(215, 300, "connections", size=11, anchor="middle", fill="#57606a"))
    shop = targets["shop"]
    lat = [pt[k] for pt in shop for k in ("p50_ms", "p99_ms", "p99_9_ms") if pt[k] and pt[k] > 0] or [1]
    right = Panel(svg, 450, 70, 290, 200, max(lat), ylog=True, ymin=min(lat), ylabel="storefront latency, ms (log)")
    xs, _ = right.xcats([str(n) for n in conns])
    for key, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p99_9_ms", "p99.9")):
        right.line(xs, [pt[key] for pt in shop], COLORS[name], name)
    svg.add(svg.text(595, 300, "connections", size=11, anchor="middle", fill="#57606a"))
    legend(svg, 82, 80, [(LABELS[k], COLORS[k], k != "shop") for k in targets])
    legend(svg, 462, 80, [("p50", COLORS["p50"], False), ("p99", COLORS["p99"], False),
                          ("p99.9", COLORS["p99.9"], False)])
    svg.save(path)


def memory_chart(res, path):
    m = res["memory_scale"]["levels"]
    labels = [human(r["sessions"]) + " sessions" for r in m]
    svg = Svg(W, H, "Redis memory as sessions grow",
              "used_memory deltas: real session value, cart hashes of 1 then 3 lines; " +
              res["date"][:16] + " UTC")
    per = [r["per_session_bytes"] for r in m] + [r["per_cart_with_one_line_bytes"] for r in m]
    left = Panel(svg, 70, 70, 290, 200, max(per) * 1.15, ylabel="bytes each")
    bar_group(svg, left, labels, [
        ("per session", COLORS["session"], [r["per_session_bytes"] for r in m]),
        ("per cart (1 line)", COLORS["cart"], [r["per_cart_with_one_line_bytes"] for r in m]),
        ("per further line", COLORS["line"], [r["per_extra_cart_line_bytes"] for r in m]),
    ], lambda v: f"{v:.0f}")
    total = [r["total_mib_sessions_and_carts"] for r in m]
    right = Panel(svg, 450, 70, 290, 200, max(total), ylog=True, ymin=min(total),
                  ylabel="MiB, sessions + 3-line carts (log)")
    xs, _ = right.xcats(labels)
    right.line(xs, total, COLORS["total"], "MiB")
    for x, v in zip(xs, total):
        svg.add(svg.text(x, right.sy(v) - 8, f"{v:.4g} MiB", size=10, anchor="middle"))
    for i, (name, color) in enumerate((("per session", COLORS["session"]), ("per cart (1 line)", COLORS["cart"]),
                                       ("per further cart line", COLORS["line"]))):
        x = 70 + i * 170
        svg.add(f'<rect x="{x}" y="{H - 22}" width="12" height="12" fill="{color}"/>')
        svg.add(svg.text(x + 18, H - 12, name, size=11))
    svg.save(path)


PEER_TITLES = [
    ("get_home_user", "logged-in `GET /`, bare"), ("get_home_user_browser", "logged-in `GET /`, browser headers"),
    ("post_cart_add", "`POST /cart/add`, bare"), ("post_cart_add_browser", "`POST /cart/add`, browser headers"),
    ("get_home_anon", "anonymous `GET /`, bare"), ("get_home_anon_browser", "anonymous `GET /`, browser headers"),
    ("get_stylesheet", "stylesheet, bare"), ("get_stylesheet_browser", "stylesheet, browser headers"),
    ("get_image_browser", "product SVG, browser headers"),
]
PEER_TITLES_DICT = dict(PEER_TITLES)


def markdown(res):
    """The tables of docs/PERFORMANCE.md, from the same JSON."""
    out = []
    if "peers" in res:
        p = res["peers"]
        out += ["| workload | server | req/s | p50 ms | p99 ms | errors | Redis cmd/req | CPU µs/req: server / "
                "Redis / wrk | bytes/resp | encoding |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        titles = {w[0]: w[1] for w in PEER_TITLES}
        for key, title in titles.items():
            first = True
            for label in ("shop", "floor", "flask"):
                r = p["workloads"].get(label, {}).get(key)
                if not r:
                    continue
                cpu = r["cpu_us_per_request"]
                enc = (r.get("probe") or {}).get("content_encoding") or ("none" if "probe" in r else "")
                out.append(f"| {title if first else ''} | {LABELS[label]} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                           f"{r['p99_ms']:.2f} | {r['errors']} | {r['redis_commands_per_request']:.2f} | "
                           f"**{cpu.get('app', 0):.1f}** / {cpu.get('redis') or 0:.1f} / {cpu.get('wrk') or 0:.1f} | "
                           f"{r.get('bytes_per_request', 0):,.0f} | {enc} |")
                first = False
        fields = ("shop_vs_floor_cpu", "flask_vs_shop_cpu", "browser_vs_bare_cpu")
        cols = [k for k in titles if any(p["ratios"].get(k, {}).get(f) is not None for f in fields)]
        out += ["", "| ratio | " + " | ".join(titles[k] for k in cols) + " |", "|---|" + "---:|" * len(cols)]
        for k, name in (("shop_vs_floor_cpu", "shop / floor, CPU per request"),
                        ("flask_vs_shop_cpu", "Flask / shop, CPU per request"),
                        ("browser_vs_bare_cpu", "browser headers / bare, the shop's CPU per request"),
                        ("browser_vs_bare_bytes", "browser headers / bare, bytes per response"),
                        ("shop_vs_floor_rps", "shop / floor, req/s"), ("shop_vs_flask_rps", "shop / Flask, req/s"),
                        ("shop_vs_flask_p99", "shop / Flask, p99")):
            cells = [p["ratios"][key].get(k) for key in cols]
            if any(c is not None for c in cells):
                out.append(f"| {name} | " + " | ".join("" if c is None else str(c) for c in cells) + " |")
        out.append("")
    if res.get("peer_targets"):
        out += ["| target | wanted | measured | | how |", "|---|---|---:|---|---|"]
        for t in res["peer_targets"]:
            out.append(f"| {t['target']} | {t['wanted']} | {t['measured']} | **{'PASS' if t['pass'] else 'MISS'}** |"
                       f" {t['note']} |")
        out.append("")
    if "nginx_keepalive" in res:
        n = res["nginx_keepalive"]
        out += ["| through nginx + 3 replicas | variant | req/s | p99 ms | errors | CPU µs/req per process |",
                "|---|---|---:|---:|---:|---|"]
        for key in ("get_home_user", "post_cart_add"):
            for name in ("keepalive", "close"):
                r = n["workloads"][name][key]
                cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_us_per_request"].items())
                out.append(f"| {PEER_TITLES_DICT.get(key, key) if name == 'keepalive' else ''} | {name} | "
                           f"{r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['errors']} | {cpu} |")
        out.append("")
    if "allocations" in res:
        out += ["| workload (the count-allocations build) | allocations | reallocations | bytes allocated |",
                "|---|---:|---:|---:|"]
        for r in res["allocations"]["workloads"].values():
            out.append(f"| {r['title']} | {r['allocs_per_request']:.1f} | {r['reallocs_per_request']:.1f} | "
                       f"{r['bytes_per_request']:,} |")
        out.append("")
    if "profile" in res:
        ws = list(res["profile"]["workloads"].values())
        groups = []
        for w in ws:
            groups += [g for g in w["groups"] if g not in groups]
        out += ["| where the shop's CPU goes (µs per request, share) | " + " | ".join(w["title"] for w in ws) + " |",
                "|---|" + "---:|" * len(ws),
                "| **all (measured)** | " + " | ".join(f"**{w['cpu_us_per_request']:.1f}**" for w in ws) + " |"]
        for g in groups:
            cells = [w["groups"].get(g) for w in ws]
            out.append(f"| {g} | " + " | ".join(f"{c['us_per_request']:.1f} ({c['percent']:.0f} %)" if c else ""
                                                 for c in cells) + " |")
        out.append("")
    if "connection_curve" in res:
        out += ["| connections | target | req/s | p50 ms | p99 ms | p99.9 ms | errors | other load |",
                "|---:|---|---:|---:|---:|---:|---:|---:|"]
        targets = res["connection_curve"]["targets"]
        for i, pt in enumerate(targets["shop"]):
            for label in targets:
                q = targets[label][i]
                out.append(f"| {q['connections'] if label == 'shop' else ''} | {LABELS[label]} | {q['rps']:,.0f} | "
                           f"{q['p50_ms']:.2f} | {q['p99_ms']:.2f} | {q['p99_9_ms']:.2f} | {q['errors']} | "
                           f"{q['other_load_percent']:.0f} % |")
        out.append("")
    if "memory_scale" in res:
        out += ["| sessions | per session | per cart, 1 line | per further line | session + 3-line cart | all, MiB |",
                "|---:|---:|---:|---:|---:|---:|"]
        for r in res["memory_scale"]["levels"]:
            out.append(f"| {r['sessions']:,} | {r['per_session_bytes']:.0f} B | {r['per_cart_with_one_line_bytes']:.0f} B"
                       f" | {r['per_extra_cart_line_bytes']:.1f} B | {r['per_session_with_3_line_cart_bytes']:.0f} B | "
                       f"{r['total_mib_sessions_and_carts']} |")
        out.append("")
    if "allocator_ab" in res:
        a = res["allocator_ab"]
        out += ["| variant | round | req/s | p99 ms | RSS after logins | RSS after the run | peak RSS |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for name in ("A", "B"):
            for r in a["rounds"][name]:
                out.append(f"| {name} | {r['round']} | {r['rps']:,.0f} | {r['p99_ms']:.2f} | {r['rss_after_logins_mb']} MB"
                           f" | {r['rss_after_run_mb']} MB | {r['peak_rss_mb']} MB |")
        out.append("")
    return "\n".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        with open(sys.argv[2]) as f:
            print(markdown(json.load(f)))
        return
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        res = json.load(f)
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    drawn = []
    for key, name, draw in (("peers", "peers.svg", peers_chart), ("peers", "cpu.svg", cpu_chart),
                            ("connection_curve", "connections.svg",
                                                                   connections_chart),
                            ("memory_scale", "memory.svg", memory_chart)):
        if key in res:
            draw(res, os.path.join(out, name))
            drawn.append(os.path.join(out, name))
    print("[bench] charts: " + (", ".join(drawn) or "none (no --peers results in the file)"))


if __name__ == "__main__":
    main()
