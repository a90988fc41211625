/* enableWhen on the page: show a question only when its conditions hold (the server applies the same rules when
   the section is saved, and decides on first view; this only keeps the page in step as answers change). */
(function () {
  "use strict";
  var form = document.querySelector("form[action$='/save']");
  if (!form) { return; }
  function values(name) {
    var out = [];
    var els = form.querySelectorAll("[name='" + name.replace(/'/g, "") + "']");
    if (!els.length) { return null; } /* not on this page: the server's decision stands */
    els.forEach(function (el) {
      if ((el.type === "radio" || el.type === "checkbox") && !el.checked) { return; }
      if (el.value !== "") { out.push(el.value); }
    });
    return out;
  }
  function holds(line) {
    var p = line.split("\t"); var v = values(p[0]);
    if (v === null) { return null; }
    var op = p[1], want = p[2];
    if (op === "exists") { return (v.length > 0) === (want === "true"); }
    if (op === "=") { return v.indexOf(want) >= 0; }
    if (op === "!=") { return v.length > 0 && v.indexOf(want) < 0; }
    var n = v.map(parseFloat).filter(function (x) { return !isNaN(x); }), w = parseFloat(want);
    return n.some(function (x) { return op === ">" ? x > w : op === ">=" ? x >= w : op === "<" ? x < w : x <= w; });
  }
  function update() {
    form.querySelectorAll("[data-when]").forEach(function (el) {
      var spec = el.getAttribute("data-when");
      if (!spec) { return; }
      var lines = spec.split("\n"), behaviour = lines.shift();
      var results = lines.map(holds);
      if (results.some(function (r) { return r === null; })) { return; }
      var on = behaviour === "any" ? results.some(Boolean) : results.every(Boolean);
      el.hidden = !on;
    });
  }
  form.addEventListener("change", update);
  update();
})();
