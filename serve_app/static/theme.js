// The colour theme, set before the page draws (no flash): "auto" follows the system's
// prefers-color-scheme; the header's button chooses light or dark for this browser.
(function () {
  const theme = localStorage.getItem("dash.theme");
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
})();
