// Sign-In with Ethereum with the browser's wallet (EIP-1193, window.ethereum): a form
// <form data-siwe="sign-in|link" data-challenge="URL" data-submit="URL"> asks the server for a
// message for the wallet's address, has the wallet sign it (personal_sign), and posts the
// signature back. Signing in goes where the server says; linking reloads the account page.
(function () {
  "use strict";

  function hex(text) {
    return "0x" + Array.prototype.map.call(new TextEncoder().encode(text), function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
  }

  async function post(form, url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value,
      },
      body: JSON.stringify(body),
    });
    var data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) {
      var error = data.error || {};
      throw new Error(error.message || "The server answered " + response.status + ". Try again.");
    }
    return data;
  }

  function said(error) {
    if (error && error.code === 4001) return "You declined in your wallet.";
    return (error && error.message) || "Something went wrong. Try again.";
  }

  async function run(form, status) {
    var wallet = window.ethereum;
    if (!wallet || typeof wallet.request !== "function") {
      throw new Error("No browser wallet found. Install one (MetaMask, Rabby, Coinbase Wallet…) and reload this page.");
    }
    status.textContent = "Waiting for your wallet…";
    var accounts = await wallet.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("Your wallet shared no account.");
    var chainId = parseInt(await wallet.request({ method: "eth_chainId" }), 16) || 1;
    var challenge = await post(form, form.dataset.challenge, { address: accounts[0], chain_id: chainId });
    status.textContent = "Sign the message in your wallet…";
    var signature = await wallet.request({ method: "personal_sign", params: [hex(challenge.message), accounts[0]] });
    status.textContent = "Checking the signature…";
    var body = { message: challenge.message, signature: signature };
    if (form.dataset.siwe === "sign-in") body.next = form.dataset.next || "";
    var done = await post(form, form.dataset.submit, body);
    if (form.dataset.siwe === "sign-in") {
      window.location.assign(done.redirect);
    } else {
      window.location.reload();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-siwe]").forEach(function (form) {
      var status = form.querySelector("[data-siwe-status]");
      var button = form.querySelector("button[type=submit]");
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        button.disabled = true;
        status.classList.remove("error");
        run(form, status).catch(function (error) {
          status.textContent = said(error);
          status.classList.add("error");
          button.disabled = false;
        });
      });
    });
  });
})();
