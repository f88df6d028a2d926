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

  // Terms the escrow contract holds a client with a wallet to (EIP-712, eth_signTypedData_v4):
  // <form data-sign-terms="/api/v1/orders/N/bids/"> (an Accept button) asks the server for the bid's
  // terms, has the wallet sign them, and submits the form with the signature and its deadline;
  // <form data-sign-authorization="URL"> signs the order's standing authorization and posts it.
  async function signTyped(url) {
    var wallet = window.ethereum;
    if (!wallet || typeof wallet.request !== "function") {
      throw new Error("Your account has a wallet: sign with it in a browser that has it (MetaMask, Rabby…).");
    }
    var response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    var data = await response.json();
    if (!response.ok) throw new Error((data.error || {}).message || "The server answered " + response.status + ".");
    if (!data.typed_data) return null;
    var accounts = await wallet.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("Your wallet shared no account.");
    var signature = await wallet.request({
      method: "eth_signTypedData_v4",
      params: [accounts[0], JSON.stringify(data.typed_data)],
    });
    return { signature: signature, typed: data.typed_data };
  }

  function hidden(form, name, value) {
    var input = form.querySelector("input[name=" + name + "]") || document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }

  // rows are added as bids arrive: one listener for every Accept form, now and later
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-sign-terms]") || form.dataset.signed) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    var bid = form.querySelector("input[name=bid]").value;
    button.disabled = true;
    signTyped(form.dataset.signTerms + bid + "/terms/").then(function (signed) {
      if (signed) {
        hidden(form, "signature", signed.signature);
        hidden(form, "deadline", signed.typed.message.deadline);
      }
      form.dataset.signed = "1";
      // the live panel may have been redrawn while the wallet signed: a detached form posts nothing
      if (!form.isConnected) {
        form.hidden = true;
        document.body.appendChild(form);
      }
      form.submit();
    }).catch(function (error) {
      button.disabled = false;
      button.title = said(error);
      window.alert(said(error));
    });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-sign-authorization]")) return;
    event.preventDefault();
    var status = form.querySelector("[data-sign-status]");
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.classList.remove("error");
    status.textContent = "Sign in your wallet…";
    signTyped(form.dataset.signAuthorization).then(function (signed) {
      if (!signed) return window.location.reload();
      return post(form, form.dataset.signAuthorization, {
        signature: signed.signature,
        expiry: signed.typed.message.expiry,
      }).then(function () { window.location.reload(); });
    }).catch(function (error) {
      status.textContent = said(error);
      status.classList.add("error");
      button.disabled = false;
    });
  });

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
