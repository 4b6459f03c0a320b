// The Tessera dashboard: polls the running client's state and sends the buttons' requests.
// Every string from a project (names, notices, messages) goes into the page as text, never as
// markup; the page's Content-Security-Policy runs no script but this file.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f6feb", "#c2410c", "#15803d", "#7c3aed", "#be185d", "#0e7490"];
let prefsDirty = false;
let lastState = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function number(value, digits) {
  return Number(value).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function moment(seconds) {
  if (!seconds || !isFinite(seconds)) return "–";
  return new Date(seconds * 1000).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function say(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
}

async function send(action, body) {
  try {
    const reply = await fetch("api/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const answer = await reply.json();
    if (!reply.ok) {
      say(answer.error || "the client refused (" + reply.status + ")", true);
      return null;
    }
    say(answer.message || "done", false);
    await refresh();
    return answer;
  } catch (error) {
    say("cannot reach the client: " + error, true);
    return null;
  }
}

function projectRow(project) {
  const title = el("td", {}, el("strong", {}, project.title || project.name), el("small", {}, project.name + " · " + project.url + " · host " + project.host_id));
  const status = [];
  if (project.suspended) status.push("suspended by you");
  if (project.problem) status.push(project.problem);
  if (project.unread) status.push(project.unread + " unread notice" + (project.unread > 1 ? "s" : ""));
  if (!status.length) status.push("next contact " + moment(project.next_contact));
  const share = el("input", { type: "number", min: "1", max: "1000000", step: "any", value: project.share, "aria-label": "resource share of " + project.name });
  share.addEventListener("change", () => send("share", { project: project.name, share: Number(share.value) }));
  const toggle = el("button", { type: "button" }, project.suspended ? "Resume" : "Suspend");
  toggle.addEventListener("click", () => send(project.suspended ? "resume" : "suspend", { project: project.name }));
  const detach = el("button", { type: "button" }, "Detach");
  detach.addEventListener("click", () => detachProject(project.name));
  return el("tr", { "data-project": project.name },
    title,
    el("td", { class: "number" }, number(project.host_total, 2)),
    el("td", { class: "number" }, number(project.host_rac, 2)),
    el("td", { class: "number" }, number(project.volunteer_total, 2)),
    el("td", {}, share),
    el("td", {}, status.join("; ")),
    el("td", {}, toggle, " ", detach));
}

async function detachProject(name) {
  if (!window.confirm("Detach from " + name + "? Its tasks not yet reported are abandoned.")) return;
  await send("detach", { project: name, abandon: true });
}

function taskRow(task) {
  const bar = el("progress", { max: "1", value: String(task.progress), "aria-label": "progress of " + task.workunit });
  return el("tr", { "data-replica": String(task.replica) },
    el("td", {}, task.project),
    el("td", {}, task.workunit),
    el("td", {}, task.version, el("small", {}, task.uses)),
    el("td", { class: "state-" + task.state.replace(/ /g, "-") }, task.state),
    el("td", {}, bar, " " + Math.round(100 * task.progress) + "%"),
    el("td", { class: "number" }, duration(task.cpu_time)),
    el("td", {}, moment(task.deadline)),
    el("td", {}, task.note));
}

function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= value);
}

function drawChart(projects, now) {
  const chart = document.getElementById("credit-chart");
  const title = chart.querySelector("title");
  chart.replaceChildren(title);
  const series = projects.map((p) => ({ name: p.title || p.name, points: p.history.concat([[now, p.host_total]]) }));
  const all = series.flatMap((s) => s.points);
  const first = Math.min(now - 120, ...all.map((p) => p[0]));
  const top = niceCeiling(Math.max(0, ...all.map((p) => p[1])));
  const [left, right, y0, y1] = [56, 630, 190, 14];
  const x = (t) => left + ((t - first) / (now - first)) * (right - left);
  const y = (c) => y0 - (c / top) * (y0 - y1);
  const label = (value) => value.toLocaleString(undefined, { maximumSignificantDigits: 3 });
  chart.append(svg("line", { class: "axis", x1: left, y1: y0, x2: right, y2: y0 }));
  chart.append(svg("line", { class: "axis", x1: left, y1: y0, x2: left, y2: y1 }));
  chart.append(svg("text", { x: left - 6, y: y1 + 4, "text-anchor": "end" }, label(top)));
  chart.append(svg("text", { x: left - 6, y: (y0 + y1) / 2 + 4, "text-anchor": "end" }, label(top / 2)));
  chart.append(svg("text", { x: left - 6, y: y0, "text-anchor": "end" }, "0"));
  chart.append(svg("text", { x: left, y: y0 + 16 }, moment(first)));
  chart.append(svg("text", { x: right, y: y0 + 16, "text-anchor": "end" }, "now"));
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    // Credit arrives in steps, when results validate: drawn as steps, each arrival a dot.
    const path = s.points.map((p, j) => (j ? "H" + x(p[0]).toFixed(1) + " V" : "M" + x(p[0]).toFixed(1) + " ") + y(p[1]).toFixed(1)).join(" ");
    chart.append(svg("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2 }));
    s.points.slice(0, -1).forEach((p) => chart.append(svg("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 3, fill: colour })));
    chart.append(svg("text", { x: left + 8, y: y1 + 14 + 14 * i, fill: colour }, s.name));
  });
  document.getElementById("chart-caption").textContent = projects.length
    ? "This computer's credit over time, per project (" + projects.length + "): each dot is credit granted."
    : "No project attached yet.";
}

function noticeItem(notice) {
  return el("li", { class: notice.unread ? "unread" : "" },
    el("strong", {}, notice.title),
    el("small", {}, notice.project + " · " + notice.created_at.slice(0, 16).replace("T", " ")),
    el("p", {}, notice.body));
}

function prefInput(pref) {
  const attrs = { name: pref.key, id: "pref-" + pref.key, "data-kind": pref.kind };
  if (pref.kind === "bool") return el("input", { ...attrs, type: "checkbox", checked: pref.value === true });
  if (pref.kind === "str") return el("input", { ...attrs, type: "time", value: pref.value });
  return el("input", { ...attrs, type: "number", step: pref.kind === "int" ? "1" : "any", value: String(pref.value) });
}

function prefRow(pref) {
  const input = prefInput(pref);
  input.addEventListener("input", () => { prefsDirty = true; });
  const reset = el("button", { type: "button", disabled: pref.source !== "local" }, "Use default");
  reset.addEventListener("click", () => send("prefs", { unset: [pref.key] }).then(() => { prefsDirty = false; renderPrefs(true); }));
  return el("tr", {},
    el("td", {}, el("label", { for: "pref-" + pref.key }, pref.key), el("small", {}, pref.meaning)),
    el("td", {}, input),
    el("td", { class: "source-" + pref.source }, pref.source),
    el("td", {}, reset));
}

function editing(id) {
  // A table being typed in is not redrawn under the volunteer's cursor by the next poll.
  const focused = document.activeElement;
  return focused && focused.tagName === "INPUT" && document.getElementById(id).contains(focused);
}

function renderPrefs(force) {
  if (!lastState || (!force && (prefsDirty || editing("pref-rows")))) return;
  document.getElementById("pref-rows").replaceChildren(...lastState.prefs.map(prefRow));
}

function savePrefs(event) {
  event.preventDefault();
  const changes = {};
  for (const pref of lastState.prefs) {
    const input = document.getElementById("pref-" + pref.key);
    const value = pref.kind === "bool" ? input.checked : input.value;
    if (String(value) !== String(pref.value)) changes[pref.key] = value;
  }
  if (!Object.keys(changes).length) { say("no preference changed", false); return; }
  send("prefs", { set: changes }).then((answer) => { if (answer) { prefsDirty = false; renderPrefs(true); } });
}

function render(state) {
  lastState = state;
  document.getElementById("version").textContent = "client " + state.version;
  const runState = document.getElementById("run-state");
  const paused = state.suspended.all || state.suspended.reason;
  runState.textContent = state.suspended.all ? "All work is suspended (by you)"
    : paused ? "Suspended: " + state.suspended.reason : "Running";
  runState.className = paused ? "suspended" : "";
  const toggle = document.getElementById("toggle-all");
  toggle.hidden = false;
  toggle.textContent = state.suspended.all ? "Resume all work" : "Suspend all work";
  if (!editing("project-rows")) document.getElementById("project-rows").replaceChildren(...state.projects.map(projectRow));
  drawChart(state.projects, state.now);
  const tasks = state.tasks.length ? state.tasks.map(taskRow) : [el("tr", {}, el("td", { colspan: "8" }, "No tasks."))];
  document.getElementById("task-rows").replaceChildren(...tasks);
  const notices = state.notices.length ? state.notices.map(noticeItem) : [el("li", {}, "No notices.")];
  document.getElementById("notice-list").replaceChildren(...notices);
  document.getElementById("event-list").replaceChildren(...state.events.slice(-150).reverse().map(([at, text]) =>
    el("li", {}, el("time", {}, new Date(at * 1000).toLocaleTimeString()), text)));
  renderPrefs(false);
}

async function refresh() {
  try {
    const reply = await fetch("api/state");
    if (!reply.ok) throw new Error("the client answered " + reply.status);
    render(await reply.json());
  } catch (error) {
    document.getElementById("run-state").textContent = "The client is not answering (" + error.message + "); is `tessera run` still running?";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("toggle-all").addEventListener("click", () =>
    send(lastState && lastState.suspended.all ? "resume" : "suspend", {}));
  document.getElementById("read-notices").addEventListener("click", () => send("read-notices", {}));
  document.getElementById("prefs-form").addEventListener("submit", savePrefs);
  document.getElementById("attach-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const fields = form.elements;
    const body = { url: fields.url.value, token: fields.token.value, name: fields.name.value };
    send("attach", body).then((answer) => { if (answer) form.reset(); });
  });
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
});
