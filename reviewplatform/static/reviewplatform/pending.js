// The undo bar (templates/review/_pending.html): counts down the answer's undo window, and
// Backspace takes the answer back while it lasts.
(function () {
  const form = document.getElementById("undo-form");
  if (!form) return;
  const until = Date.parse(form.dataset.until);
  const countdown = document.getElementById("pending-countdown");
  function tick() {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) { form.hidden = true; return; }
    countdown.textContent = "in " + left + " s";
    setTimeout(tick, 250);
  }
  tick();
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Backspace" || form.hidden) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    event.preventDefault();
    form.submit();
  });
})();
