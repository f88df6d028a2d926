// The lease page's shell: xterm.js in the page, over /ws/leases/<id>/shell/ to the marketplace,
// which relays it to the provider's agent. What the shell writes comes as binary frames; keystrokes
// and resizes go as JSON; the server says how the session stands with {"type": "status", ...}.
(function () {
  "use strict";

  function setUp(section) {
    var openButton = section.querySelector("[data-shell-open]");
    var closeButton = section.querySelector("[data-shell-close]");
    var statusLine = section.querySelector("#shell-status");
    var box = section.querySelector("#terminal");
    var term = null, fit = null, socket = null;

    function say(text) { statusLine.textContent = text; }

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    function resize() {
      if (!term) return;
      fit.fit();
      send({ type: "resize", cols: term.cols, rows: term.rows });
    }

    function ended(text) {
      say(text);
      section.dataset.state = "closed";
      openButton.hidden = false;
      openButton.textContent = "Open a new shell";
      closeButton.hidden = true;
      if (term) term.options.disableStdin = true;
    }

    function open() {
      box.hidden = false;
      if (!term) {
        term = new window.Terminal({ cursorBlink: true, fontSize: 14, convertEol: false, scrollback: 5000 });
        fit = new window.FitAddon.FitAddon();
        term.loadAddon(fit);
        term.open(box);
        term.onData(function (data) { send({ type: "stdin", data: data }); });
        window.addEventListener("resize", resize);
      } else {
        term.reset();
        term.options.disableStdin = false;
      }
      fit.fit();
      openButton.hidden = true;
      closeButton.hidden = false;
      section.dataset.state = "connecting";
      say("Connecting…");
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var url = scheme + location.host + section.dataset.shell + "?cols=" + term.cols + "&rows=" + term.rows;
      var ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      socket = ws;
      var closedSaid = "";
      ws.onmessage = function (message) {
        if (typeof message.data !== "string") {
          term.write(new Uint8Array(message.data));
          return;
        }
        var event = {};
        try { event = JSON.parse(message.data) || {}; } catch (e) { return; }
        if (event.type !== "status") return;
        if (event.state === "open") {
          section.dataset.state = "open";
          say("Connected.");
          resize();
          term.focus();
        } else if (event.state === "closed") {
          closedSaid = event.message || "The shell ended.";
        } else {
          say(event.message || "Connecting…");
        }
      };
      ws.onclose = function () {
        if (socket === ws) socket = null;
        ended(closedSaid || "Disconnected: the connection to the marketplace closed.");
      };
    }

    // the button works while the lease runs: the live panel says its state as it changes
    function follow() {
      var badge = document.getElementById("lease-status");
      var running = !!badge && badge.dataset.status === "running";
      if (socket) return;
      openButton.disabled = !running;
      if (!running && section.dataset.state !== "closed") say("A shell opens once the workload runs.");
      else if (running && !section.dataset.state) say("");
    }
    document.body.addEventListener("htmx:afterSwap", follow);

    openButton.addEventListener("click", open);
    closeButton.addEventListener("click", function () {
      if (socket) socket.close();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-shell]").forEach(setUp);
  });
})();
