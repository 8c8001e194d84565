"""``genbench report``: the results database as one static HTML page, opened from the file system.

The page holds every suite's leaderboard (the split tables, sortable by clicking a header), each
row's samples, reconstructions and learning curves, the paper tables with their charts, and the
provenance of every number (budget, seeds, settings, versions, feature-network hash). Its images
are inlined as data URIs and its one script is inline: no server, no network, no CDN.
"""

from genbench.report.page import report_html, write_report

__all__ = ["report_html", "write_report"]
