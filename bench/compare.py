#!/usr/bin/env python3
"""Compares two benchmark results: python3 bench/compare.py OLD.json NEW.json"""
import json
import sys

WORKLOADS = ["get_home_user", "get_cart", "get_home_anon", "post_cart_add"]
FIELDS = [("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
          ("redis_app_commands_per_request", "cmd/req")]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    old, new = (json.load(open(p)) for p in sys.argv[1:])
    print(f"old: {old['date']} {old['versions'].get('git_commit')}   new: {new['date']} {new['versions'].get('git_commit')}")
    print(f"{'workload':<16}{'store':<8}{'field':<9}{'old':>10}{'new':>10}{'change':>9}")
    for store in ("redis", "memory", "nginx"):
        if store not in old or store not in new:
            continue
        for w in WORKLOADS:
            for field, label in FIELDS:
                a = old[store]["workloads"][w].get(field)
                b = new[store]["workloads"][w].get(field)
                if a is None or b is None:
                    continue
                change = f"{(b - a) / a * 100:+.0f}%" if a else ""
                print(f"{w:<16}{store:<8}{label:<9}{a:>10.2f}{b:>10.2f}{change:>9}")
    for t_old, t_new in zip(old.get("targets", []), new.get("targets", [])):
        flag = lambda t: "PASS" if t["pass"] else "MISS"
        print(f"{flag(t_old)} -> {flag(t_new)}  {t_new['target']}: {t_old['measured']} -> {t_new['measured']}")


if __name__ == "__main__":
    main()
