"""A run's report folder, from its one typed :class:`~tritonstack.loadtest.report.summary.Summary`.

``summary.json`` (:mod:`.summary`), ``report.md`` and the plots (:mod:`.markdown`, :mod:`.goodput`),
``report.html`` (:mod:`.html`); ``compare`` (:mod:`.compare`) reads two summaries back. Locust itself
writes ``locust_stats.csv`` (and its history/failures CSVs) and ``locust.html``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.report import goodput, html, markdown, summary


def write_all(campaign: Campaign, found: summary.Summary, out: Path) -> summary.Summary:
    """Draw the plots, write report.md, summary.json and report.html; return the summary with the
    folder's file list (a new object: summaries are frozen)."""
    if sweep := goodput.curve(campaign, found.windows):
        goodput.plot(sweep, out / goodput.PLOT_FILE, campaign.name, goodput.p99_line(campaign))
    elif campaign.is_step:
        markdown.plot(campaign, found, out / "latency-vs-throughput.png")
    elif any(s.window_s for s in campaign.stages):
        markdown.plot_over_time(campaign, found, out / "over-time.png")
    files = {p.name for p in out.iterdir() if p.is_file()} | {summary.FILE, "report.md", "report.html"}
    found = dataclasses.replace(found, files=tuple(sorted(files)))
    (out / "report.md").write_text(markdown.markdown(campaign, found) + "\n", encoding="utf-8")
    summary.write(found, out)
    (out / "report.html").write_text(html.render(campaign, found, out), encoding="utf-8")
    return found
