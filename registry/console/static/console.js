// dtr web console: small enhancements; every page works without them.
(function () {
  "use strict";
  // Ask before forms marked .confirm (deleting a tag, a repository, a
  // team); without JavaScript the server shows a confirmation page instead.
  document.querySelectorAll("form.confirm").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); return; }
      var c = document.createElement("input");
      c.type = "hidden"; c.name = "confirmed"; c.value = "yes";
      f.appendChild(c);
    });
  });
  // Copy buttons and click-to-select pull commands.
  document.querySelectorAll("input.copy").forEach(function (i) {
    i.addEventListener("focus", function () { i.select(); });
  });
  document.querySelectorAll("button.copybtn").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var i = document.getElementById(b.dataset.copy);
      i.select();
      var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard) { navigator.clipboard.writeText(i.value).then(done, function () { document.execCommand("copy"); done(); }); }
      else { document.execCommand("copy"); done(); }
    });
  });
  // The Storage page shows the S3 fields only for S3.
  var s3 = document.querySelector("fieldset.s3");
  if (s3) {
    var radios = document.querySelectorAll('input[name="type"]');
    var show = function () { s3.hidden = document.querySelector('input[name="type"]:checked').value !== "s3"; };
    radios.forEach(function (r) { r.addEventListener("change", show); });
    show();
  }
  // System → Identity shows the chosen source's fields only.
  var kinds = document.querySelectorAll('input[name="kind"]');
  if (kinds.length) {
    var showKind = function () {
      var k = document.querySelector('input[name="kind"]:checked');
      k = k ? k.value : "local";
      document.querySelectorAll("fieldset.kind-ldap, fieldset.kind-ucp").forEach(function (f) {
        f.hidden = !f.classList.contains("kind-" + k);
      });
      var t = document.querySelector("fieldset.test");
      if (t) { t.hidden = k === "local"; }
    };
    kinds.forEach(function (r) { r.addEventListener("change", showKind); });
    showKind();
  }
  // Sort tables marked .sortable by a click on a column's heading
  // (data-sort holds a sortable value where the text is not one).
  document.querySelectorAll("table.sortable").forEach(function (t) {
    t.querySelectorAll("thead th").forEach(function (th, col) {
      if (!th.textContent.trim()) { return; }
      th.dataset.sortable = "1";
      th.title = "Sort";
      th.addEventListener("click", function () {
        var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.dataset.dir === "asc" ? -1 : 1;
        t.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        var key = function (r) {
          var c = r.cells[col]; if (!c) { return ""; }
          var v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent.trim();
          var n = Number(v); return v !== "" && !isNaN(n) ? n : v.toLowerCase();
        };
        rows.sort(function (a, b) { var x = key(a), y = key(b); return x < y ? -dir : x > y ? dir : 0; });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
