// A placeholder until the dashboard's page lands: shows the overview as JSON.
"use strict";
(async () => {
  const out = document.getElementById("overview");
  try {
    const reply = await fetch("/ui/api/overview", { credentials: "same-origin" });
    out.textContent = JSON.stringify(await reply.json(), null, 2);
  } catch (error) {
    out.textContent = `cannot read the overview: ${error}`;
  }
})();
