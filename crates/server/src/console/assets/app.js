// The console's shell: sign-in state, navigation and the hash router
// (#/syncs, #/syncs/NAME, #/runs/ID, #/rejected/NAME, #/plan/NAME,
// #/plugins, #/tenants).

import * as api from "./api.js";
import * as views from "./views.js";

const { h } = views;
const main = document.getElementById("main");
const nav = document.getElementById("nav");

function renderNav() {
  const role = api.role();
  const links = role === "operator" ? [["#/tenants", "Tenants"]]
    : role === "tenant" ? [["#/syncs", "Syncs"], ["#/plugins", "Plugins"]] : [];
  const current = location.hash.split("/")[1] || "";
  nav.replaceChildren(
    ...links.map(([href, label]) => h("a", { href, "aria-current": href.split("/")[1] === current ? "page" : null }, label)),
    role ? h("span", { class: "who" }, role === "operator" ? "operator" : "tenant") : "",
    role ? h("button", { type: "button", id: "sign-out", onclick: () => { api.signOut(); location.hash = "#/signin"; route(); } }, "Sign out") : "");
}

async function route() {
  renderNav();
  const [, page, ...rest] = location.hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (!api.token()) {
    document.title = "Sign in · Sluice";
    views.signInPage(main, (role) => {
      const target = role === "operator" ? "#/tenants" : "#/syncs";
      if (location.hash === target) route(); else location.hash = target;
    });
    return;
  }
  const operator = api.role() === "operator";
  const pages = {
    tenants: () => views.tenantsPage(main),
    syncs: () => (arg ? views.syncPage(main, arg, route) : views.syncsPage(main)),
    runs: () => views.runPage(main, arg),
    rejected: () => views.ledgerPage(main, arg),
    plan: () => views.planPage(main, arg),
    plugins: () => views.pluginsPage(main),
  };
  const name = pages[page] && (operator === (page === "tenants")) ? page : operator ? "tenants" : "syncs";
  if (name !== page) { location.replace(`#/${name}`); return; }
  document.title = `${arg || name[0].toUpperCase() + name.slice(1)} · Sluice`;
  try {
    await pages[name]();
  } catch (e) {
    if (e.status === 401) { api.signOut(); location.hash = "#/signin"; return; }
    main.replaceChildren(h("h1", {}, e.status === 404 ? "Not found" : "Something went wrong"),
      h("p", { class: "error", role: "alert" }, e.message),
      h("p", {}, h("a", { href: "#/syncs" }, "Back to the syncs")));
  }
  main.focus({ preventScroll: true });
}

document.getElementById("tz").textContent =
  `Times are shown in your time zone (${Intl.DateTimeFormat().resolvedOptions().timeZone}).`;
window.addEventListener("hashchange", route);
route();
