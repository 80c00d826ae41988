// The review page (templates/review/task.html): zoom, the lease kept while the page is open,
// and the keyboard. Server values come from the page's data- attributes.
(function () {
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("case-image");
  const zoomLevel = document.getElementById("zoom-level");
  let zoom = 1;
  function setZoom(value, x, y) {
    zoom = Math.min(16, Math.max(1, value));
    image.style.width = image.style.height = (zoom * 100) + "%";
    viewer.classList.toggle("zoomed", zoom > 1);
    zoomLevel.textContent = Math.round(zoom * 100) + "%";
    if (x !== undefined) {
      viewer.scrollLeft = x * viewer.scrollWidth - viewer.clientWidth / 2;
      viewer.scrollTop = y * viewer.scrollHeight - viewer.clientHeight / 2;
    }
  }
  // Brightness and contrast, for night-time captures: a CSS filter on the image only.
  const brightness = document.getElementById("brightness");
  const contrast = document.getElementById("contrast");
  function setFilter() {
    image.style.filter = "brightness(" + brightness.value + ") contrast(" + contrast.value + ")";
    document.getElementById("brightness-level").textContent = Math.round(brightness.value * 100) + "%";
    document.getElementById("contrast-level").textContent = Math.round(contrast.value * 100) + "%";
  }
  function step(input, by) {
    input.value = Math.min(Number(input.max), Math.max(Number(input.min), Number(input.value) + by));
    setFilter();
  }
  brightness.addEventListener("input", setFilter);
  contrast.addEventListener("input", setFilter);
  function viewReset() {
    brightness.value = contrast.value = 1;
    setFilter();
    setZoom(1);
  }
  document.getElementById("view-reset").addEventListener("click", viewReset);

  viewer.addEventListener("click", function (event) {
    const box = viewer.getBoundingClientRect();
    const x = (viewer.scrollLeft + event.clientX - box.left) / viewer.scrollWidth;
    const y = (viewer.scrollTop + event.clientY - box.top) / viewer.scrollHeight;
    setZoom(zoom > 1 ? 1 : 3, x, y);
  });

  // Keep the lease while the page is open; when it goes away without an answer, keep the case
  // only for a short grace (a reload finds it again, a closed tab hands it back).
  const leaseForm = document.getElementById("lease-form");
  let leaving = false;
  function leasePost(closing) {
    const data = new FormData(leaseForm);
    if (closing) { data.append("closing", "1"); navigator.sendBeacon(leaseForm.dataset.url, data); return; }
    fetch(leaseForm.dataset.url, {method: "POST", body: data, credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 409 || response.status === 404) {
          document.getElementById("lease-lost").style.display = "block";
        }
      }).catch(function () {});
  }
  setTimeout(function () { leasePost(false); }, 1500);
  setInterval(function () { leasePost(false); }, Number(leaseForm.dataset.every));
  window.addEventListener("pagehide", function () { if (!leaving) leasePost(true); });
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function () { leaving = true; });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || leaving) return;
    const key = event.key.toLowerCase();
    if (key === "+" || key === "=") { setZoom(zoom * 1.5); event.preventDefault(); return; }
    if (key === "-") { setZoom(zoom / 1.5); event.preventDefault(); return; }
    if (key === "z") { viewReset(); event.preventDefault(); return; }
    if (key === "[" || key === "]") { step(brightness, key === "]" ? 0.25 : -0.25); event.preventDefault(); return; }
    if (key === "{" || key === "}") { step(contrast, key === "}" ? 0.25 : -0.25); event.preventDefault(); return; }
    if (key.startsWith("arrow") && zoom > 1) {
      const step = viewer.clientWidth / 4;
      viewer.scrollBy(key === "arrowleft" ? -step : key === "arrowright" ? step : 0,
                      key === "arrowup" ? -step : key === "arrowdown" ? step : 0);
      event.preventDefault(); return;
    }
    const button = document.querySelector('button[data-key="' + key + '"]');
    if (button) { event.preventDefault(); button.click(); }
  });
})();
