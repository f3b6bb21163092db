/* weightstats report: sort a table by clicking its header, filter its rows by text. No network. */
(function () {
  "use strict";
  function cellKey(row, i, numeric) {
    var raw = row.cells[i].getAttribute("data-v");
    if (raw === null || raw === "") { return null; }
    if (numeric) { var v = parseFloat(raw); return isNaN(v) ? null : v; }
    return raw.toLowerCase();
  }
  function sortTable(table, th) {
    var i = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var sign = dir === "ascending" ? 1 : -1;
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, n) {
      return { row: r, key: cellKey(r, i, numeric), n: n };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) {  /* missing values always last */
        if (a.key === b.key) { return a.n - b.n; }
        return a.key === null ? 1 : -1;
      }
      if (a.key < b.key) { return -sign; }
      if (a.key > b.key) { return sign; }
      return a.n - b.n;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }
  function filterTable(input) {
    var table = document.getElementById(input.getAttribute("data-table"));
    var q = input.value.trim().toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      var hit = q === "" || r.textContent.toLowerCase().indexOf(q) !== -1;
      r.hidden = !hit;
      if (hit) { shown += 1; }
    });
    var count = document.querySelector('.count[data-table="' + table.id + '"]');
    if (count) { count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows"; }
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.addEventListener("click", function () { sortTable(table, th); });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
    input.addEventListener("input", function () { filterTable(input); });
  });
}());
