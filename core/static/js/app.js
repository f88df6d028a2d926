// GPU Market pages: local times, countdowns, copy buttons, tabs, and live updates over WebSockets.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) el.textContent = d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    });
  }

  function countdowns(root) {
    root.querySelectorAll("[data-deadline]").forEach(function (el) {
      if (el.dataset.ticking) return;
      el.dataset.ticking = "1";
      var end = new Date(el.dataset.deadline).getTime();
      function tick() {
        var left = Math.max(0, Math.round((end - Date.now()) / 1000));
        var m = Math.floor(left / 60), s = left % 60;
        el.textContent = left > 0 ? m + ":" + String(s).padStart(2, "0") : "closed";
        if (left > 0) setTimeout(tick, 1000);
      }
      tick();
    });
  }

  // A cost meter that ticks between updates: data-rate (micro-dollars per hour), data-base
  // (the amount at data-since), data-cap (never beyond).
  function meters(root) {
    root.querySelectorAll("[data-meter-rate]").forEach(function (el) {
      if (el.dataset.ticking) return;
      el.dataset.ticking = "1";
      var rate = Number(el.dataset.meterRate), base = Number(el.dataset.meterBase);
      var cap = Number(el.dataset.meterCap), since = new Date(el.dataset.meterSince).getTime();
      function tick() {
        if (!document.body.contains(el)) return;
        var amount = Math.min(cap, base + Math.floor(rate * Math.max(0, Date.now() - since) / 3600000));
        el.textContent = "$" + (amount / 1e6).toLocaleString([], { minimumFractionDigits: 4, maximumFractionDigits: 4 });
        setTimeout(tick, 1000);
      }
      tick();
    });
  }

  function copyButtons(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var text = button.dataset.copy;
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, done); else done();
      });
    });
  }

  function tabs(root) {
    root.querySelectorAll("[role=tablist]").forEach(function (list) {
      if (list.dataset.bound) return;
      list.dataset.bound = "1";
      var buttons = list.querySelectorAll("[role=tab]");
      buttons.forEach(function (button) {
        button.addEventListener("click", function () {
          buttons.forEach(function (other) {
            var selected = other === button;
            other.setAttribute("aria-selected", String(selected));
            document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
          });
          var input = list.parentElement.querySelector("input[name=mode]");
          if (input) input.value = button.dataset.mode;
        });
      });
    });
  }

  // A bid event carries the bid's row (text already formatted): put it in its place among the
  // listed bids (the cheapest first, data-rank), from the page's <template data-bid-row>, without
  // fetching the list again. False when the page cannot (no list yet): the caller refetches.
  function placeBid(el, event) {
    var table = el.querySelector("table[data-limit]"), template = el.querySelector("template[data-bid-row]");
    if (!table || !template) return false;
    var bid = event.bid, body = table.tBodies[0], limit = Number(table.dataset.limit);
    var total = Number(table.dataset.total), old = body.querySelector('tr[data-bid="' + bid.id + '"]');
    if (old) old.remove(); else if (event.type === "bid.placed") total += 1;
    var row = template.content.firstElementChild.cloneNode(true);
    row.dataset.bid = bid.id;
    row.dataset.rank = bid.rank;
    row.querySelectorAll("[data-text]").forEach(function (node) { node.textContent = bid.text[node.dataset.text] || ""; });
    row.querySelectorAll("[data-label]").forEach(function (node) { node.setAttribute("aria-label", bid.text[node.dataset.label] || ""); });
    row.querySelectorAll("input[name=bid]").forEach(function (input) { input.value = bid.id; });
    if (bid.status !== "open") row.querySelectorAll("[data-open-only]").forEach(function (node) { node.remove(); });
    var next = Array.prototype.find.call(body.rows, function (other) { return other.dataset.rank > bid.rank; });
    if (next) body.insertBefore(row, next); else if (body.rows.length < limit) body.appendChild(row);
    while (body.rows.length > limit) body.deleteRow(-1);
    if (row.parentNode) row.classList.add("fresh");
    table.dataset.total = total;
    el.querySelectorAll("[data-bids-total]").forEach(function (node) { node.textContent = total; });
    el.querySelectorAll("[data-bids-shown]").forEach(function (node) { node.textContent = body.rows.length; });
    el.querySelectorAll("[data-bids-more]").forEach(function (node) { node.hidden = total <= body.rows.length; });
    return true;
  }

  // <div data-live="/ws/orders/7/" hx-get="..." hx-trigger="live"> reloads itself on every event
  // from its socket, bid events excepted (they carry their row); it reconnects with backoff.
  // It reloads once each time its socket opens, the first time too: the server joins the socket
  // to its group before it accepts, so that fetch sees whatever was sent while no socket listened
  // (between the page's render and the socket's open, or while it was away).
  // data-live-types="a b" reloads only on events of those types; data-live-ignore="c" not on those.
  function live(root) {
    root.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.dataset.bound) return;
      el.dataset.bound = "1";
      var delay = 500;
      function connect() {
        var scheme = location.protocol === "https:" ? "wss://" : "ws://";
        var socket = new WebSocket(scheme + location.host + el.dataset.live);
        socket.onopen = function () {
          el.dataset.state = "online";
          htmx.trigger(el, "live");
          delay = 500;
        };
        socket.onmessage = function (message) {
          var event = {};
          try { event = JSON.parse(message.data) || {}; } catch (e) { event = {}; }
          var type = event.type || "";
          var only = (el.dataset.liveTypes || "").split(" ").filter(Boolean);
          var ignored = (el.dataset.liveIgnore || "").split(" ").filter(Boolean);
          if (only.length && only.indexOf(type) < 0) return;
          if (ignored.indexOf(type) >= 0) return;
          // a list fetched while the bid was committing may lack it: fetch again after that one
          if (event.bid && placeBid(el, event) && !el.classList.contains("htmx-request")) return;
          htmx.trigger(el, "live");
        };
        socket.onclose = function (event) {
          el.dataset.state = "offline";
          if (event.code === 4403 || !document.body.contains(el)) return;
          setTimeout(connect, delay);
          delay = Math.min(delay * 2, 15000);
        };
      }
      connect();
    });
  }

  // a form that asks first (the Content-Security-Policy allows no inline handlers)
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // a select that fills other fields from a JSON script element (the new-order form's templates)
  function fillers(root) {
    root.querySelectorAll("select[data-fills]").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      var current = JSON.parse(document.getElementById(select.dataset.fills).textContent)[select.value];
      if (current) templateEnv(current, true);
      select.addEventListener("change", function () {
        var all = JSON.parse(document.getElementById(select.dataset.fills).textContent);
        var chosen = all[select.value];
        if (!chosen) return;
        Object.keys(chosen).forEach(function (name) {
          var field = document.getElementById("id_" + name);
          if (field && name !== "label") field.value = chosen[name];
        });
        templateEnv(chosen, false);
        // fields that belong to one template (the inference server's model) show with it
        document.querySelectorAll("[data-for-template]").forEach(function (el) {
          el.hidden = el.dataset.forTemplate !== select.value;
        });
      });
    });
  }

  // a table of form rows that grows (a Django formset): the template row, numbered, at its end
  function addRow(button) {
    var prefix = button.dataset.addRow;
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    var most = document.getElementById("id_" + prefix + "-MAX_NUM_FORMS");
    var count = parseInt(total.value, 10);
    if (most && count >= parseInt(most.value, 10)) return null;
    var html = document.getElementById(button.dataset.template).innerHTML.replace(/__prefix__/g, String(count));
    var body = document.getElementById(button.dataset.rows);
    body.insertAdjacentHTML("beforeend", html);
    total.value = String(count + 1);
    return body.lastElementChild;
  }
  function rowAdders(root) {
    root.querySelectorAll("button[data-add-row]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var row = addRow(button);
        var first = row && row.querySelector("input");
        if (first) first.focus();
      });
    });
  }

  // a template's environment rows (the SSH box's user, the Jupyter template's fresh token): the
  // rows the last template filled are emptied (an empty row is no variable), the chosen one's filled
  function randomToken() {
    var bytes = new Uint8Array(24);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function templateEnv(chosen, marking) {
    var wanted = Object.assign({}, chosen.env || {});
    if (chosen.jupyter) wanted.JUPYTER_TOKEN = null;  // a fresh token, unless one is there
    var names = function () { return Array.prototype.slice.call(document.querySelectorAll("#env-rows input[name$='-name']")); };
    if (marking) {  // the page as the server filled it: mark the rows the template gave
      names().forEach(function (input) { if (input.value in wanted) input.dataset.fromTemplate = "1"; });
      return;
    }
    names().forEach(function (input) {
      if (!input.dataset.fromTemplate) return;
      delete input.dataset.fromTemplate;
      if (input.value in wanted) return;
      input.closest("tr").querySelectorAll("input:not([type=checkbox])").forEach(function (field) { field.value = ""; });
    });
    Object.keys(wanted).forEach(function (name) {
      var row = names().filter(function (input) { return input.value === name; })[0];
      if (row) { row.dataset.fromTemplate = "1"; return; }
      row = names().filter(function (input) { return !input.value; })[0];
      if (!row) {
        var added = addRow(document.querySelector("button[data-add-row=env]"));
        row = added && added.querySelector("input[name$='-name']");
      }
      if (!row) return;
      row.value = name;
      row.dataset.fromTemplate = "1";
      row.closest("tr").querySelector("input[data-secret-value]").value = wanted[name] === null ? randomToken() : wanted[name];
    });
  }

  // a form larger than the server reads (data-max-bytes) is not sent: it says so, and keeps the text
  function tooLarge(form) {
    var most = parseInt(form.dataset.maxBytes || "0", 10);
    if (!most) return false;
    var size = new Blob([new URLSearchParams(new FormData(form)).toString()]).size;
    var note = form.querySelector("[data-size-error]");
    if (size <= most) {
      if (note) note.hidden = true;
      return false;
    }
    if (note) {
      note.textContent = "This order is " + (size / 1048576).toFixed(1) + " MB; the marketplace reads at most " +
        (most / 1048576).toFixed(1) + " MB. Nothing was sent and your text is kept: shorten the workload file.";
      note.hidden = false;
      note.focus();
    }
    return true;
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.maxBytes && tooLarge(form)) event.preventDefault();
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail && event.detail.elt;
    if (form && form.dataset && form.dataset.maxBytes && tooLarge(form)) event.preventDefault();
  });

  // a secret's value is typed unseen
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-secret-toggle]")) return;
    var value = box.closest("tr") && box.closest("tr").querySelector("input[data-secret-value]");
    if (value) value.type = box.checked ? "password" : "text";
  });

  // a log tail shows its newest lines
  function logTails(root) {
    root.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
  }

  function enhance(root) {
    localTimes(root); countdowns(root); meters(root); copyButtons(root); tabs(root); live(root); logTails(root);
    fillers(root); rowAdders(root);
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSettle", function (event) { enhance(event.target); });
})();
