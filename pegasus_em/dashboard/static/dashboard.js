// Pegasus dashboard: progressive enhancement only.  Every page works without
// this file; it (1) refreshes live pages in place and (2) sorts tables.
// No inline handlers: the Content-Security-Policy allows only this file.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v !== null ? v : cell.textContent.trim();
  }

  var NUMBER = /^[-+]?\d+(\.\d+)?(e[-+]?\d+)?$/i;

  function compare(a, b) {
    if (NUMBER.test(a) && NUMBER.test(b)) { return parseFloat(a) - parseFloat(b); }
    return a.localeCompare(b, undefined, {numeric: true, sensitivity: "base"});
  }

  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var d = compare(cellValue(r1, index), cellValue(r2, index));
      return ascending ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function makeSortable(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table.sortable"), function (table) {
      if (!table.tHead || table.getAttribute("data-sorting") === "on") { return; }
      table.setAttribute("data-sorting", "on");
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
        th.tabIndex = 0;
        th.title = "Sort by this column";
        th.addEventListener("click", function () { sortBy(table, th, index); });
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th, index); }
        });
      });
    });
  }

  function busy() {
    var a = document.activeElement;
    return a && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(a.tagName) && a.form && a.form.method === "post";
  }

  function startRefresh(main) {
    var seconds = parseInt(main.getAttribute("data-refresh"), 10);
    if (!(seconds > 0) || !window.fetch || !window.DOMParser) { return; }
    var top = document.querySelector("header.top");
    var label = document.createElement("label");
    label.className = "live";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    label.appendChild(box);
    label.appendChild(document.createTextNode(" auto-refresh"));
    if (top) { top.appendChild(label); }
    var timer = null;
    function schedule() { timer = window.setTimeout(tick, seconds * 1000); }
    function tick() {
      if (!box.checked || document.hidden || busy()) { schedule(); return; }
      fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (text) {
            var doc = new DOMParser().parseFromString(text, "text/html");
            var fresh = doc.getElementById("main");
            if (fresh) {
              main.innerHTML = fresh.innerHTML;
              makeSortable(main);
              if (!fresh.hasAttribute("data-refresh")) { return; }
            }
          }
          schedule();
        })
        .catch(schedule);
    }
    box.addEventListener("change", function () { if (box.checked && timer === null) { schedule(); } });
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    makeSortable(document);
    var main = document.getElementById("main");
    if (main) { startRefresh(main); }
  });
}());
