"""The report page's inline style sheet and its one script (no file, font or library is fetched)."""

from __future__ import annotations

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0; color: #1b1f24; background: #ffffff; }
header, main { max-width: 1400px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 16px; border-bottom: 1px solid #d0d7de; }
h1 { font-size: 24px; margin: 8px 0; }
h2 { font-size: 20px; margin-top: 32px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 16px; margin-top: 24px; }
h4 { font-size: 14px; margin-top: 16px; }
nav a { margin-right: 12px; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f4f6; padding: 1px 4px;
       border-radius: 3px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top;
         white-space: nowrap; }
thead th { background: #eef1f4; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th::after { content: " \\2195"; color: #8c959f; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\25B2"; color: #0969da; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\25BC"; color: #0969da; }
tbody tr:nth-child(even) { background: #f8f9fa; }
table.provenance td:first-child { font-weight: 600; }
table.provenance td { white-space: normal; max-width: 640px; overflow-wrap: anywhere; }
.run { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 16px; margin: 16px 0; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: 12px; color: #57606a; max-width: 320px; }
img.grid { image-rendering: pixelated; }
.muted { color: #57606a; }
"""

#: sorts a table.sortable by the clicked header's column: numbers by their value (the leading number
#: of "110.04 ± 0.12" or "1000 / 1000"), other cells as text; blank cells ("", "–") always last
SCRIPT = """
(function () {
  "use strict";
  var NUMBER = /^[-+]?(\\d+(\\.\\d*)?|\\.\\d+)(e[-+]?\\d+)?/i;
  function value(cell) {
    var text = cell ? cell.textContent.trim() : "";
    var match = text.match(NUMBER);
    var blank = text === "" || text === "\\u2013";
    return {text: text, blank: blank, number: match ? parseFloat(match[0]) : null};
  }
  function compare(a, b) {
    if (a.number !== null && b.number !== null && a.number !== b.number) { return a.number - b.number; }
    return a.text.localeCompare(b.text);
  }
  function sortBy(table, index, header) {
    var body = table.tBodies[0];
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return {row: row, key: value(row.cells[index]), position: position};
    });
    rows.sort(function (x, y) {
      if (x.key.blank !== y.key.blank) { return x.key.blank ? 1 : -1; }
      var order = compare(x.key, y.key);
      return (ascending ? order : -order) || x.position - y.position;
    });
    rows.forEach(function (entry) { body.appendChild(entry.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.tabIndex = 0;
      header.title = "sort by this column";
      header.addEventListener("click", function () { sortBy(table, index, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, index, header);
        }
      });
    });
  });
})();
"""
