// The rollout page's scope editor (templates/rollout/rollout.html): add and remove rules and
// time windows, keep the JSON view in step with the form, and show the proposed policy in
// words, its diff and what publishing changes, as the server reads them (rollout/preview/).
// The form posts the same fields without this script.
(function () {
  const form = document.getElementById("scope-editor");
  if (!form) { return; }
  form.classList.add("js");
  const rules = document.getElementById("rules");
  const ruleTemplate = document.getElementById("rule-template");
  const windowTemplate = document.getElementById("window-template");
  const json = document.getElementById("rules-json");
  const jsonInitial = document.getElementById("rules-initial");
  const confirm = document.getElementById("publish-confirm");
  const previewBox = document.getElementById("preview");

  function fromTemplate(template, replace) {
    let html = template.innerHTML;
    Object.keys(replace).forEach(function (key) { html = html.split(key).join(replace[key]); });
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }

  function nextIndex(nodes, read) {
    let next = 0;
    nodes.forEach(function (node) { next = Math.max(next, read(node) + 1); });
    return next;
  }

  function windowAdd(rule, start, end) {
    const prefix = "rule-" + rule.dataset.index;
    const box = rule.querySelector(".windows");
    const j = nextIndex(box.querySelectorAll(".window"), function (row) {
      return Number(row.querySelector("input").name.split("-")[3]);
    });
    const row = fromTemplate(windowTemplate, {"__prefix__": prefix, "__j__": String(j)});
    row.querySelector("input[name$='-start']").value = start || "";
    row.querySelector("input[name$='-end']").value = end || "";
    box.appendChild(row);
    return row;
  }

  function ruleAdd() {
    const i = nextIndex(rules.querySelectorAll("fieldset.rule"), function (node) {
      return Number(node.dataset.index);
    });
    const rule = fromTemplate(ruleTemplate, {"__i__": String(i)});
    rules.appendChild(rule);
    return rule;
  }

  // A rule filled in from its JSON form (the Advanced view).
  function ruleFill(rule, data) {
    const prefix = "rule-" + rule.dataset.index + "-";
    function field(name) { return rule.querySelector("[name='" + prefix + name + "']"); }
    function tick(name, values) {
      rule.querySelectorAll("[name='" + prefix + name + "']").forEach(function (box) {
        box.checked = (values || []).indexOf(box.value) >= 0;
      });
    }
    field("name").value = data.name || "";
    tick("regions", data.regions);
    tick("regions_not", data.regions_not);
    tick("weekdays", data.weekdays);
    (data.windows || []).forEach(function (w) { windowAdd(rule, w.start, w.end); });
    const dates = data.dates || {};
    field("date-from").value = dates.from || "";
    field("date-until").value = dates.until || "";
    field("percent").value = data.percent === undefined ? "" : data.percent;
    field("confidence_threshold").value =
      data.confidence_threshold === undefined ? "" : data.confidence_threshold;
    field("group").value = data.group || "";
  }

  function jsonError(text) {
    form.querySelector(".field-error[data-for='rules']").textContent = text;
  }

  function listShow(id, lines, tag) {
    const box = document.getElementById(id);
    box.replaceChildren();
    lines.forEach(function (line) {
      const item = document.createElement(tag);
      item.textContent = line;
      box.appendChild(item);
    });
  }

  function errorsShow(errors) {
    form.querySelectorAll(".field-error").forEach(function (span) { span.textContent = ""; });
    Object.keys(errors).forEach(function (key) {
      const span = form.querySelector(".field-error[data-for='" + key + "']") ||
        form.querySelector(".field-error[data-for='rules']");
      span.textContent = (span.dataset.for === key ? "" : key + ": ") + errors[key];
    });
  }

  function previewShow(preview) {
    previewBox.replaceChildren();
    const head = document.createElement("p");
    const a = preview.agreement;
    head.id = "preview-count";
    head.textContent = preview.matched + " of the last " + preview.replayed + " cases (" +
      preview.days + " days) would be decided by the model (" + preview.added +
      " more than now). Among those reviewed by humans, the model agreed " +
      (a.n ? a.agreed + " of " + a.n + " times (" + a.rate.toFixed(3) + ")." : ": none reviewed yet.");
    previewBox.appendChild(head);
    const list = document.createElement("ul");
    list.className = "sample";
    preview.sample.forEach(function (c) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = c.url;
      const image = document.createElement("img");
      image.src = c.image;
      image.alt = "case " + c.id;
      image.width = image.height = 64;
      link.appendChild(image);
      const caption = document.createElement("span");
      caption.textContent = c.label + (c.confidence === null ? "" : " (" + c.confidence.toFixed(2) + ")") +
        (c.human ? ", human: " + c.human : "");
      item.append(link, caption);
      list.appendChild(item);
    });
    previewBox.appendChild(list);
    const gate = document.createElement("p");
    gate.textContent = "Evidence gate: " + preview.gate + ": " + preview.gate_reason;
    previewBox.appendChild(gate);
  }

  let pending = null;
  let sequence = 0;
  function refresh(withPreview) {
    const data = new FormData(form);
    data.delete("action");
    if (withPreview) { data.append("preview", "1"); }
    const mine = ++sequence;
    return fetch(form.dataset.previewUrl, {method: "POST", body: data, credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (mine !== sequence) { return; }
        errorsShow(answer.errors);
        form.dataset.live = Object.keys(answer.errors).length ? "invalid" : "ok";
        if (Object.keys(answer.errors).length) { return; }
        listShow("live-lines", answer.lines, "p");
        listShow("live-diff", answer.diff, "li");
        const before = document.getElementById("changes").textContent;
        listShow("changes", answer.changes, "li");
        // A confirmation holds for the changes it was given on, not for new ones.
        if (document.getElementById("changes").textContent !== before) { confirm.checked = false; }
        Object.keys(answer.names).forEach(function (prefix) {
          const input = form.querySelector("[name='" + prefix + "-name']");
          if (input) { input.placeholder = answer.names[prefix]; }
        });
        if (document.activeElement !== json) {
          json.value = jsonInitial.value = answer.rules;
          jsonError("");
        }
        if (answer.preview) { previewShow(answer.preview); }
      });
  }
  function refreshSoon() {
    clearTimeout(pending);
    pending = setTimeout(function () { refresh(false); }, 300);
  }

  form.addEventListener("click", function (event) {
    const target = event.target;
    if (target.id === "rule-add") { ruleAdd(); refreshSoon(); }
    else if (target.classList.contains("rule-remove")) { target.closest("fieldset.rule").remove(); refreshSoon(); }
    else if (target.classList.contains("window-add")) { windowAdd(target.closest("fieldset.rule")); }
    else if (target.classList.contains("window-remove")) { target.closest(".window").remove(); refreshSoon(); }
    else if (target.id === "preview-button") { clearTimeout(pending); refresh(true); }
  });
  form.addEventListener("input", function (event) {
    const name = event.target.name || "";
    if (event.target === json) {
      let data;
      try { data = JSON.parse(json.value || "[]"); } catch (error) { jsonError("not valid JSON yet: " + error.message); return; }
      if (!Array.isArray(data)) { jsonError("rules are a list of rule objects"); return; }
      jsonError("");
      rules.querySelectorAll("fieldset.rule").forEach(function (node) { node.remove(); });
      data.forEach(function (rule) { ruleFill(ruleAdd(), rule || {}); });
      jsonInitial.value = json.value;
      refreshSoon();
    } else if (["reason", "override_reason", "effective_at", "confirm"].indexOf(name) < 0) {
      refreshSoon();
    }
  });
  form.addEventListener("change", function (event) {
    if (event.target.type === "checkbox" && event.target.name !== "confirm") { refreshSoon(); }
  });

  // With the add buttons at hand, the empty rule and window rows offered without a script go.
  rules.querySelectorAll("[data-spare]").forEach(function (node) { node.remove(); });
  if (!rules.querySelector("fieldset.rule")) { ruleAdd(); }
})();
