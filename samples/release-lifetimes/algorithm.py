"""Support lifetimes of Linux distribution releases.

Runs inside c2d's sandbox: reads every dataset under /data/inputs/<did>/<n> (CSV files of releases with
`release` and `eol` dates, as in Debian's distro-info-data) and writes per-dataset statistics to
/data/outputs/summary.json and a readable report to /data/outputs/report.txt. Uses only the standard library.
"""

import csv
import datetime
import json
import os
import statistics


def parse(day):
    return datetime.date.fromisoformat(day) if day else None


def summarise(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    lifetimes = []
    for row in rows:
        release, eol = parse(row.get("release")), parse(row.get("eol"))
        if release and eol and eol >= release:
            lifetimes.append((row.get("version") or "?", row.get("codename") or "?", (eol - release).days))
    days = [d for _, _, d in lifetimes]
    releases = sorted(parse(r["release"]) for r in rows if r.get("release"))
    gaps = [(b - a).days for a, b in zip(releases, releases[1:])]
    longest = max(lifetimes, key=lambda x: x[2]) if lifetimes else None
    return {
        "releases": len(rows),
        "releases_with_eol": len(lifetimes),
        "first_release": releases[0].isoformat() if releases else None,
        "latest_release": releases[-1].isoformat() if releases else None,
        "mean_support_days": round(statistics.mean(days), 1) if days else None,
        "median_support_days": statistics.median(days) if days else None,
        "longest_supported": {"version": longest[0], "codename": longest[1], "days": longest[2]} if longest else None,
        "median_days_between_releases": statistics.median(gaps) if gaps else None,
    }


def main():
    inputs = os.environ.get("INPUTS", "/data/inputs")
    outputs = os.environ.get("OUTPUTS", "/data/outputs")
    summary = {}
    for did in json.loads(os.environ.get("DIDS", "[]")):
        folder = os.path.join(inputs, did)
        for name in sorted(os.listdir(folder), key=lambda n: int(n) if n.isdigit() else n):
            summary[f"{did}/{name}"] = summarise(os.path.join(folder, name))
            print(f"summarised {did}/{name}: {summary[f'{did}/{name}']['releases']} releases")
    with open(os.path.join(outputs, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    with open(os.path.join(outputs, "report.txt"), "w") as f:
        for key, s in summary.items():
            longest = s["longest_supported"] or {}
            f.write(
                f"{key}: {s['releases']} releases from {s['first_release']} to {s['latest_release']}; "
                f"median support {s['median_support_days']} days; longest {longest.get('codename')} "
                f"({longest.get('days')} days); a new release every {s['median_days_between_releases']} days "
                f"(median)\n"
            )
    print("done")


if __name__ == "__main__":
    main()
