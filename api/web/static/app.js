// The router: sign-in when there is no session, then one page module per path.

import * as api from "./api.js";

const PAGES = [
  [/^\/$/, () => import("./overview.js")],
  [/^\/hosts\/([^/]+)$/, () => import("./host.js")],
  [/^\/plugins$/, () => import("./plugins.js")],
  [/^\/explore$/, () => import("./explore.js")],
  [/^\/alerts$/, () => import("./alerts.js")],
];

const main = document.getElementById("main");
let leave = null;

function header(signedIn) {
  const s = api.session();
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  const who = document.getElementById("who");
  who.hidden = !signedIn;
  who.textContent = signedIn ? `${s.name} (${s.scopes.join(", ")})` : "";
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.getAttribute("href") === location.pathname;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function clear() {
  if (leave) leave();
  leave = null;
  main.replaceChildren();
  document.body.removeAttribute("data-ready");
}

function showSignIn(message = "") {
  clear();
  header(false);
  main.append(document.getElementById("signin-form").content.cloneNode(true));
  const form = document.getElementById("signin");
  const error = document.getElementById("signin-error");
  error.textContent = message;
  form.elements.token.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.elements.token.value.trim();
    if (!token) {
      error.textContent = "Enter a token.";
      return;
    }
    try {
      await api.signIn(token);
    } catch (failure) {
      error.textContent = failure.status === 401 ? "That token is not valid (unknown, revoked or expired)." : failure.message;
      form.elements.token.select();
      return;
    }
    form.reset();
    route();
  });
  document.body.dataset.ready = "signin";
}

export async function route() {
  if (!api.session()) {
    showSignIn();
    return;
  }
  clear();
  header(true);
  const match = PAGES.map(([pattern, load]) => [location.pathname.match(pattern), load]).find(([m]) => m);
  if (!match) {
    main.innerHTML = "<h1>Not found</h1>";
    return;
  }
  const [found, load] = match;
  const page = await load();
  try {
    leave = (await page.render(main, found.slice(1).map(decodeURIComponent), navigate)) || null;
  } catch (failure) {
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = `Could not load this page: ${failure.message}`;
    main.append(p);
  }
}

/** Go to a path (with its query) in this page, keeping history. */
export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
  main.focus();
});
window.addEventListener("popstate", route);
document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api.signOut();
  } finally {
    showSignIn("Signed out.");
  }
});
api.whenSignedOut(() => showSignIn("Your session ended; sign in again."));

try {
  await api.resume();
  route();
} catch (failure) {
  // The API answered, but not with a session or a 401 (a dependency down): say so, keep no page.
  main.replaceChildren(Object.assign(document.createElement("p"), {
    className: "error",
    role: "alert",
    textContent: `The API cannot check the session: ${failure.message}. Reload to retry.`,
  }));
}
