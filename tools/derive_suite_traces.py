"""Regenerate the real request-rate traces of the scenario suite from their public sources.

Not run by the tests, and nothing here downloads: fetch the sources yourself (each trace's
SOURCE.md names them, with their licences), then run

    python tools/derive_suite_traces.py azure --source invocations.csv [--source ...]
    python tools/derive_suite_traces.py wikipedia --peyton example_wp_peyton_manning.csv \
        --r-language example_wp_R.csv

Each writes ``src/migrator/data/traces/<trace>/counts.csv``, a wide CSV (``time_s`` and one
count column per series) that ``migrator.workload.traces.load_csv`` reads. Both traces are
time-compressed: one row is one period of the source (a minute of Azure Functions, a day of
Wikipedia), replayed as one simulated second; scenarios scale the counts with ``scale:``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

TRACES = Path(__file__).resolve().parent.parent / "src" / "migrator" / "data" / "traces"

#: Azure Functions 2019 (day file rows, per-minute invocation counts): the column name each
#: selected function gets, by the first 12 hex digits of its HashFunction. Chosen for varied
#: shapes: two HTTP functions with load that moves minute to minute, one nearly flat HTTP
#: function, one heavy event function that saturates near 15,000/min, and two bursty ones.
AZURE_FUNCTIONS = {
    "02158978e403": "http_a",
    "cbf808658abb": "http_b",
    "47658c9cff05": "http_c",
    "063ba6f3c1d4": "event_a",
    "e72c1540681c": "event_b",
    "660323aa6f10": "event_c",
}
MINUTES_PER_DAY = 1440


def azure_rows(sources: Iterable[Path]) -> dict[str, list[int]]:
    """Per selected function, its 1,440 per-minute counts (the first row seen of each)."""
    found: dict[str, list[int]] = {}
    for source in sources:
        with source.open(newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            header = next(reader)
            first_minute = header.index("1")
            function = header.index("HashFunction")
            for row in reader:
                name = AZURE_FUNCTIONS.get(row[function][:12])
                if name is not None and name not in found:
                    found[name] = [int(v) for v in row[first_minute:first_minute + MINUTES_PER_DAY]]
    missing = sorted(set(AZURE_FUNCTIONS.values()) - set(found))
    if missing:
        raise SystemExit(f"functions not in the sources: {', '.join(missing)}")
    return {name: found[name] for name in AZURE_FUNCTIONS.values()}


def daily_counts(path: Path) -> dict[dt.date, float]:
    """A prophet example file (``"ds","y"``: date, page views that day)."""
    with path.open(newline="", encoding="utf-8") as stream:
        return {dt.date.fromisoformat(row["ds"]): float(row["y"]) for row in csv.DictReader(stream)}


def fill_days(series: dict[dt.date, float], first: dt.date, last: dt.date) -> list[int]:
    """One count per day from ``first`` to ``last``; a day the source lacks (a gap in the
    page-view statistics) is interpolated linearly between its neighbours."""
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    known = sorted(d for d in series if first <= d <= last)
    out = []
    for day in days:
        if day in series:
            out.append(round(series[day]))
            continue
        before = max(d for d in known if d < day)
        after = min(d for d in known if d > day)
        weight = (day - before).days / (after - before).days
        out.append(round(series[before] + weight * (series[after] - series[before])))
    return out


def write_wide(path: Path, columns: dict[str, Sequence[int]]) -> None:
    names = list(columns)
    length = len(columns[names[0]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["time_s", *names])
        for k in range(length):
            writer.writerow([k, *(columns[name][k] for name in names)])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="trace", required=True)
    azure = sub.add_parser("azure", help="Azure Functions trace 2019, per-minute counts of six functions")
    azure.add_argument("--source", type=Path, action="append", required=True,
                       help="a file with the 2019 trace's invocation-count header (HashOwner, HashApp, "
                            "HashFunction, Trigger, 1..1440); repeat for several")
    wiki = sub.add_parser("wikipedia", help="daily English Wikipedia page views of two articles")
    wiki.add_argument("--peyton", type=Path, required=True, help="example_wp_peyton_manning.csv")
    wiki.add_argument("--r-language", type=Path, required=True, help="example_wp_R.csv")
    args = parser.parse_args(argv)
    if args.trace == "azure":
        write_wide(TRACES / "azure-functions-2019" / "counts.csv", azure_rows(args.source))
        return
    peyton, r_language = daily_counts(args.peyton), daily_counts(args.r_language)
    first = max(min(peyton), min(r_language))
    last = min(max(peyton), max(r_language))
    write_wide(TRACES / "wikipedia-pageviews" / "counts.csv", {
        "peyton_manning": fill_days(peyton, first, last),
        "r_language": fill_days(r_language, first, last),
    })


if __name__ == "__main__":
    main()
