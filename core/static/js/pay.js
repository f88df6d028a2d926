// The card payment page: Stripe's Payment Element for the top-up's PaymentIntent (the page's
// stripe-config element holds the publishable key, the client secret and where to return).
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    var config = JSON.parse(document.getElementById("stripe-config").textContent);
    var stripe = Stripe(config.key);
    var elements = stripe.elements({ clientSecret: config.client_secret });
    elements.create("payment").mount("#payment-element");
    var form = document.getElementById("payment-form"), button = document.getElementById("pay");
    var problem = document.getElementById("payment-error");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      button.disabled = true;
      problem.hidden = true;
      var result = await stripe.confirmPayment({
        elements: elements,
        confirmParams: { return_url: location.origin + config.return_path },
      });
      // only reached when the payment could not be confirmed (otherwise Stripe returns to us)
      problem.textContent = (result.error && result.error.message) || "The payment did not go through.";
      problem.hidden = false;
      button.disabled = false;
    });
  });
})();
