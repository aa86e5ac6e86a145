// Splitting Folios: the book's own script (added to every page by tools/book_extras/site.py).
(function () {
  "use strict";
  // The site's root address, from the page's own address (Sphinx writes the relative root).
  function siteRoot() {
    var rel = document.documentElement.dataset.content_root || "./";
    return new URL(rel, window.location.href).href.replace(/\/$/, "");
  }

  // The pip command on the how-to page shows the wheel's full address.
  function fullWheelAddresses() {
    document.querySelectorAll("a.pyfolio-wheel").forEach(function (a) {
      a.textContent = a.href;
    });
  }

  // A downloaded chapter notebook installs the wheel from this site: put the site's address
  // into its first cell (the file on the server holds @BOOK_URL@ when no base URL is set).
  function rewriteNotebookDownloads() {
    document.querySelectorAll("a[href$='.ipynb']").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var name = a.href.split("/").pop();
        fetch(a.href).then(function (r) { return r.text(); }).then(function (text) {
          var blob = new Blob([text.split("@BOOK_URL@").join(siteRoot())],
                              {type: "application/x-ipynb+json"});
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = name;
          document.body.appendChild(link);
          link.click();
          setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
        });
      });
    });
  }

  // A widget's picture (an <img> the widget manager draws from the saved state) gets alt text:
  // what the surrounding figure's caption says it shows.
  function altForWidgetImages(root) {
    root.querySelectorAll("img.widget-image:not([alt])").forEach(function (img) {
      var fig = img.closest("figure");
      var cap = fig && fig.querySelector("figcaption");
      var what = cap ? cap.textContent.replace(/\s+/g, " ").replace(/^Fig\. [\d.]+\s*/, "").trim()
                     : "";
      img.alt = "Snapshot of the widget's picture" + (what ? ": " + what : "");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    fullWheelAddresses();
    rewriteNotebookDownloads();
    altForWidgetImages(document);
    new MutationObserver(function () { altForWidgetImages(document); })
      .observe(document.body, {childList: true, subtree: true});
  });
})();
