/* Click (or Enter on) a header of a table.sortable to sort its rows by that column; again to
   reverse.  A cell's data-sort attribute, when present, is its sort key (numbers for numeric
   columns, "" for a missing value, which sorts last).  Hand-written on purpose: sorting one
   table is twenty lines, so no library is needed, and the page must open offline from a
   copied folder, which rules out a CDN. */
(function () {
  function key(cell) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    var num = Number(raw);
    return raw === "" ? null : (isNaN(num) ? raw.toLowerCase() : num);
  }
  function compare(x, y) {
    if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
    if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a.cells[col]), kb = key(b.cells[col]);
          if (ka === null || kb === null) return compare(ka, kb);  /* missing last either way */
          return up ? compare(ka, kb) : compare(kb, ka);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });
})();
