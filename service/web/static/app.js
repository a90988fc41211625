/* Move keyboard and screen-reader focus to a page's error summary, as the NHS.UK design system does. */
(function () {
  "use strict";
  var summary = document.querySelector(".nhsuk-error-summary");
  if (summary) { summary.focus(); }
})();
