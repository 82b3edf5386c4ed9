// fedprog risk page: SMART App Launch (EHR launch, PKCE) or a pasted token, a form generated from
// the released model's inputs, one $predict-risk call, and the answer read back from the
// RiskAssessment itself: risks with intervals, the survival curve, each input's contribution.
// A logistic model (model.json "curve": false) gives the probability of its outcome at its one
// horizon: no curve, contributions as odds ratios.
// Every number shown comes from the server's RiskAssessment; nothing is computed here but layout.
"use strict";

const $ = (id) => document.getElementById(id);
const BASE = `${location.origin}/fhir`;
const REDIRECT = `${location.origin}/app/`;
const CLIENT_ID = "fedprog-risk-page";
const SCOPE = "launch user/RiskAssessment.cr";
// each input's (and interaction's) log hazard ratio (Cox) or log odds ratio (logistic)
const CONTRIBUTION = new Set(["urn:fedprog:fhir:StructureDefinition:log-hazard-contribution",
  "urn:fedprog:fhir:StructureDefinition:log-odds-contribution"]);
const INTERVAL = "urn:fedprog:fhir:StructureDefinition:prediction-interval-95";
const INTERACTION = new Set(["urn:fedprog:fhir:StructureDefinition:interaction-contribution",
  "urn:fedprog:fhir:StructureDefinition:interaction-log-odds-contribution"]);
const CURVE_POINTS = 48;
// input kinds sent as a valueQuantity ("integer": a count or grade, whole numbers only)
const NUMERIC = new Set(["quantity", "integer"]);
const session = { token: null, patient: null, user: null };
let MODEL = null;

function show(id, visible) { $(id).hidden = !visible; }
function status(text) { $("status").textContent = text || ""; show("status", Boolean(text)); }
function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function randomString() { const a = new Uint8Array(48); crypto.getRandomValues(a); return b64url(a); }
function pct(p) { const x = 100 * p; return x < 0.05 ? "<0.1" : x < 9.95 ? x.toFixed(1) : x.toFixed(0); }
function fmt(v) { return Number.isInteger(v) ? String(v) : String(Math.round(v * 100) / 100); }

async function getJson(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => null);
  return { ok: r.ok, status: r.status, body };
}

// ------------------------------------------------------------------ sign-in (SMART App Launch)
async function startLaunch(params) {
  const iss = params.get("iss");
  if (iss !== BASE) throw new Error(`This page works only with its own FHIR server (${BASE}), not ${iss}.`);
  const conf = await getJson(`${iss}/.well-known/smart-configuration`);
  if (!conf.ok) throw new Error("The server's SMART configuration could not be read.");
  const verifier = randomString(), state = randomString();
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem("fedprog.pkce", JSON.stringify({ verifier, state, token: conf.body.token_endpoint }));
  const q = new URLSearchParams({ response_type: "code", client_id: CLIENT_ID, redirect_uri: REDIRECT,
    launch: params.get("launch"), scope: SCOPE, state, aud: iss, code_challenge: challenge,
    code_challenge_method: "S256" });
  location.assign(`${conf.body.authorization_endpoint}?${q}`);
}

async function finishLaunch(params) {
  const saved = JSON.parse(sessionStorage.getItem("fedprog.pkce") || "null");
  sessionStorage.removeItem("fedprog.pkce");
  history.replaceState(null, "", REDIRECT);
  if (params.get("error")) throw new Error(`Sign-in refused: ${params.get("error_description") || params.get("error")}.`);
  if (!saved || params.get("state") !== saved.state) throw new Error("Sign-in failed (state mismatch): open the page from the EHR again.");
  const body = new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"),
    redirect_uri: REDIRECT, code_verifier: saved.verifier, client_id: CLIENT_ID });
  const r = await getJson(saved.token, { method: "POST", body });
  if (!r.ok) throw new Error(`Sign-in failed: ${(r.body && r.body.error_description) || r.status}.`);
  const claims = JSON.parse(atob(r.body.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  Object.assign(session, { token: r.body.access_token, patient: r.body.patient, user: claims.sub });
  sessionStorage.setItem("fedprog.session", JSON.stringify(session));
}

// ------------------------------------------------------------------------------- the form
function buildForm() {
  const fields = $("fields");
  fields.replaceChildren();
  for (const input of MODEL.inputs) {
    if (input.from_birth_date) continue;  // the server computes the age from the date of birth
    const id = `in-${input.name}`;
    const box = el("div", { class: "field" });
    const unit = NUMERIC.has(input.kind) && input.unit_text ? ` (${input.unit_text})` : "";
    box.append(el("label", { for: id }, `${input.display}${unit}`));
    let control;
    if (NUMERIC.has(input.kind)) {
      control = el("input", { id, name: input.name, type: "text", autocomplete: "off",
        inputmode: input.kind === "integer" ? "numeric" : "decimal",
        "aria-describedby": `${id}-hint` });
    } else {
      control = el("select", { id, name: input.name, "aria-describedby": `${id}-hint` });
      control.append(el("option", { value: "" }, "— choose —"));
      const options = input.kind === "boolean" ? [["true", "Yes"], ["false", "No"]]
        : input.categories.map((c, i) => [String(i), c.display || c.code]);
      for (const [value, text] of options) control.append(el("option", { value }, text));
    }
    box.append(control, el("span", { id: `${id}-hint`, class: "hint" }, input.range_text));
    fields.append(box);
  }
}

function observation(input, raw, pid, when) {
  const obs = { resourceType: "Observation", id: `${pid}-${input.name}`.replace(/_/g, "-").slice(0, 64),
    status: "final", code: { coding: [input.code], text: input.display },
    subject: { reference: `Patient/${pid}` }, effectiveDateTime: when };
  if (NUMERIC.has(input.kind)) {
    obs.valueQuantity = { value: Number(raw), unit: input.unit, system: "http://unitsofmeasure.org", code: input.unit };
  } else if (input.kind === "boolean") {
    obs.valueBoolean = raw === "true";
  } else {
    const c = input.categories[Number(raw)];
    obs.valueCodeableConcept = { coding: [c], text: c.display };
  }
  return obs;
}

function identity() {
  // who the clinician confirms this is: sent as the Patient (the server checks the sex and computes
  // the age from the date of birth) and shown with the result
  return { name: $("patient-name").value.trim(), birthDate: $("patient-birth").value.trim(),
    gender: $("patient-sex").value };
}

function patientResource(pid, who, problems) {
  const patient = { resourceType: "Patient", id: pid };
  if (who.name) patient.name = [{ text: who.name }];
  if (who.gender) patient.gender = who.gender;
  if (/^\d{4}-\d{2}-\d{2}$/.test(who.birthDate)) patient.birthDate = who.birthDate;
  else if (who.birthDate) {
    problems.push(`Date of birth: "${who.birthDate}" is not a date (YYYY-MM-DD)`);
    $("patient-birth").setAttribute("aria-invalid", "true");
  }
  return patient;
}

function readForm() {
  const pid = session.patient, when = new Date().toISOString(), problems = [], entries = [];
  const who = identity();
  entries.push({ fullUrl: `${BASE}/Patient/${pid}`, resource: patientResource(pid, who, problems) });
  const values = {};
  for (const input of MODEL.inputs) {
    if (input.from_birth_date) { values[input.name] = ageFrom(who.birthDate); continue; }
    const raw = $(`in-${input.name}`).value.trim();
    values[input.name] = raw;
    if (raw === "") continue;  // the server names every missing input
    if (NUMERIC.has(input.kind) && !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) {
      problems.push(`${input.display}: "${raw}" is not a number`);
      continue;
    }
    const obs = observation(input, raw, pid, when);
    entries.push({ fullUrl: `${BASE}/Observation/${obs.id}`, resource: obs });
  }
  return { problems, values, who, bundle: { resourceType: "Bundle", type: "collection", entry: entries } };
}

function ageFrom(birthDate) {
  // whole years on today's date, for display only (the server computes the age it scores)
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birthDate || "");
  if (!m) return "";
  const now = new Date(), y = now.getUTCFullYear() - Number(m[1]);
  const before = now.getUTCMonth() + 1 < Number(m[2]) || (now.getUTCMonth() + 1 === Number(m[2]) && now.getUTCDate() < Number(m[3]));
  return String(before ? y - 1 : y);
}

const SEX_WORDS = { female: "female", male: "male", other: "other", unknown: "unknown" };
function whoText(who) {
  const age = ageFrom(who.birthDate);
  return [who.name || "name not entered", who.birthDate ? `born ${who.birthDate}${age ? ` (${age} years)` : ""}` : "date of birth not entered",
    SEX_WORDS[who.gender] || "sex not recorded", `Patient/${session.patient}`].join(" · ");
}

function horizons() {
  if (!MODEL.curve) return [];  // a logistic model: its one horizon, the server's default
  const last = Math.max(...MODEL.horizons.map((h) => h.value));
  const grid = Array.from({ length: CURVE_POINTS }, (_, i) => (last * (i + 1)) / CURVE_POINTS);
  return [...new Set([...grid, ...MODEL.horizons.map((h) => h.value)])].sort((a, b) => a - b);
}

async function submit(event) {
  event.preventDefault();
  if (!session.token) session.token = $("token").value.trim();
  if (!session.patient) session.patient = $("patient-id").value.trim() || "demo-patient";
  for (const field of $("fields").querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  const { problems, values, who, bundle } = readForm();
  if (problems.length) return refuse(problems);
  const parameters = { resourceType: "Parameters", parameter: [{ name: "patient", resource: bundle },
    ...horizons().map((h) => ({ name: "horizon", valueDecimal: h }))] };
  status("Estimating…");
  const r = await getJson(`${BASE}/Patient/$predict-risk`, { method: "POST",
    headers: { "Content-Type": "application/fhir+json", Accept: "application/fhir+json",
      Authorization: `Bearer ${session.token}` }, body: JSON.stringify(parameters) });
  status("");
  if (!r.ok) {
    const issues = (r.body && r.body.issue) || [];
    return refuse(issues.length ? issues.map((i) => i.diagnostics || i.code) : [`the server answered ${r.status}`]);
  }
  render(r.body, values, who);
}

function named(line) {
  // the server opens a refusal with the input's clinical label ("Positive lymph nodes: …"), or with its
  // model name when the model declares no label: mark that field invalid for assistive technology
  if (/sex/i.test(line) && line.startsWith("The patient's")) $("patient-sex").setAttribute("aria-invalid", "true");
  const starts = (word) => line.startsWith(`${word} `) || line.startsWith(`${word}:`);
  const input = MODEL.inputs.find((i) => starts(i.display) || starts(i.name));
  if (!input) return line;
  const field = input.from_birth_date ? $("patient-birth") : $(`in-${input.name}`);
  field.setAttribute("aria-invalid", "true");
  return starts(input.display) ? line : `${input.display}: ${line}`;
}

function refuse(lines) {
  show("result", false);
  const list = $("refusal-list");
  list.replaceChildren(...lines.map((line) => el("li", {}, named(line))));
  show("refusal", true);
  $("refusal").focus();
}

// ------------------------------------------------------------------------------- the answer
function predictions(ra) {
  return ra.prediction.map((p) => {
    const range = (p.extension || []).find((e) => e.url === INTERVAL).valueRange;
    return { h: p.whenRange.high.value, risk: p.probabilityDecimal, lo: range.low.value, hi: range.high.value };
  });
}

function render(ra, values, who) {
  show("refusal", false);
  $("result-patient").textContent = `For ${whoText(who)}`;
  const preds = predictions(ra);
  const heads = $("headlines");
  heads.replaceChildren();
  for (const h of MODEL.horizons) {
    const p = preds.find((x) => Math.abs(x.h - h.value) < 1e-9);
    const n = Math.round(100 * p.risk);
    const card = el("div", { class: "headline", "data-horizon": String(h.value), "data-risk": String(p.risk),
      "data-lower": String(p.lo), "data-upper": String(p.hi) });
    const when = MODEL.curve ? `Within ${h.label}` : `Probability of ${MODEL.event} at ${h.label}`;
    card.append(el("div", { class: "muted" }, when),
      el("div", { class: "big" }, `${pct(p.risk)}%`),
      el("div", { class: "ci" }, `95% interval ${pct(p.lo)}–${pct(p.hi)}%`));
    const icons = el("div", { class: "icons", role: "img", "aria-label": `${n} of 100 marked` });
    for (let i = 0; i < 100; i++) icons.append(el("span", i < n ? { class: "hit" } : {}));
    card.append(icons, el("p", { class: "words" }, MODEL.curve
      ? `${n} of 100 patients like this one have ${MODEL.event} within ${h.label}; ${100 - n} do not.`
      : `${n} of 100 patients like this one have ${MODEL.event} at ${h.label}; ${100 - n} do not.`));
    heads.append(card);
  }
  if (MODEL.curve) drawCurve(preds);
  drivers(ra, values);
  drawEffects(values);
  $("about-assessment").textContent = `RiskAssessment/${ra.id}, ${ra.occurrenceDateTime}`;
  show("result", true);
  $("result-title").focus();
}

function drawCurve(preds) {
  const W = 640, H = 300, L = 56, R = 32, T = 14, B = 44, NS = "http://www.w3.org/2000/svg";
  const last = Math.max(...preds.map((p) => p.h));
  const pts = [{ h: 0, risk: 0, lo: 0, hi: 0 }, ...preds];
  const floor = Math.max(0, Math.floor(10 * Math.min(...pts.map((p) => 1 - p.hi))) / 10 - 0.1);
  const x = (t) => L + ((W - L - R) * t) / last;
  const y = (s) => T + ((H - T - B) * (1 - s)) / (1 - floor);
  const svg = document.createElementNS(NS, "svg");
  const shape = (tag, attrs) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); svg.append(n); return n; };
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const end = preds[preds.length - 1];
  const lastLabel = MODEL.horizons[MODEL.horizons.length - 1].label;  // the curve ends at the last horizon
  svg.setAttribute("aria-label", `The proportion free of ${MODEL.event} falls from 100% to ${pct(1 - end.risk)}% at ${lastLabel}`);
  for (let s = floor; s <= 1.0001; s += 0.1) {
    shape("line", { x1: L, x2: W - R, y1: y(s), y2: y(s), stroke: "#e1e6eb" });
    shape("text", { x: L - 8, y: y(s) + 4, "text-anchor": "end", "font-size": 12, fill: "#4a5562" }).textContent = `${Math.round(s * 100)}%`;
  }
  for (const t of MODEL.ticks) {
    if (t.value > last + 1e-9) continue;
    shape("text", { x: x(t.value), y: H - B + 18, "text-anchor": "middle", "font-size": 12, fill: "#4a5562" }).textContent = t.label;
  }
  shape("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12, fill: "#4a5562" }).textContent = "time since assessment";
  const band = pts.map((p) => `${x(p.h)},${y(1 - p.lo)}`).concat(pts.slice().reverse().map((p) => `${x(p.h)},${y(1 - p.hi)}`));
  shape("polygon", { points: band.join(" "), fill: "#9cc3ea", "fill-opacity": 0.6 });
  shape("polyline", { points: pts.map((p) => `${x(p.h)},${y(1 - p.risk)}`).join(" "), fill: "none", stroke: "#0b5cad", "stroke-width": 2.5 });
  for (const h of MODEL.horizons) {
    shape("line", { x1: x(h.value), x2: x(h.value), y1: T, y2: H - B, stroke: "#1b1f24", "stroke-dasharray": "4 4" });
  }
  $("curve").replaceChildren(svg);
  $("curve-caption").textContent = `Estimated proportion free of ${MODEL.event} (line) with its 95% interval (band), `
    + `at ${preds.length} times up to ${lastLabel}; dashed lines mark the model's horizons.`;
}

function drivers(ra, values) {
  // an input's Observation, or the Patient herself for the age computed from her date of birth
  const byId = Object.fromEntries(MODEL.inputs.map((i) => [i.from_birth_date ? session.patient
    : `${session.patient}-${i.name}`.replace(/_/g, "-"), i]));
  const rows = [];
  for (const b of ra.basis || []) {
    const ext = (b.extension || []).find((e) => CONTRIBUTION.has(e.url));
    const input = byId[(b.reference || "").split("/").pop()];
    if (ext && input) rows.push({ input, c: ext.valueDecimal });
  }
  // a declared interaction's own contribution (sums with the inputs' to the log hazard or odds ratio)
  const names = Object.fromEntries(MODEL.inputs.map((i) => [i.name, i.display]));
  for (const e of (ra.extension || []).filter((x) => INTERACTION.has(x.url))) {
    const part = (u) => (e.extension || []).find((x) => x.url === u) || {};
    const name = part("effect").valueString || "";
    const display = `${name.split(":").map((n) => names[n] || n).join(" × ")} (interaction)`;
    rows.push({ input: { name, display, interaction: true }, c: part("contribution").valueDecimal || 0 });
  }
  const scale = Math.max(1e-9, ...rows.map((r) => Math.abs(r.c)));
  const body = $("drivers").querySelector("tbody");
  body.replaceChildren();
  for (const { input, c } of rows.sort((a, b) => Math.abs(b.c) - Math.abs(a.c))) {
    const tr = el("tr", { "data-input": input.name, "data-contribution": String(c) });
    const raw = values[input.name];
    const shown = input.interaction ? "" : input.from_birth_date ? `${raw} ${input.unit_text} (from the date of birth)`
      : NUMERIC.has(input.kind) ? `${raw} ${input.unit_text}`.trim() : input.kind === "boolean" ? (raw === "true" ? "yes" : "no")
      : (input.categories[Number(raw)].display || raw);
    const factor = Math.exp(c);
    const word = c > 1e-12 ? ["raises", `raises the ${MODEL.ratio} ×${factor.toFixed(2)}`] : c < -1e-12
      ? ["lowers", `lowers the ${MODEL.ratio} ×${factor.toFixed(2)}`] : ["", "no effect"];
    const bar = el("div", { class: "bar", "aria-hidden": "true" });
    const fill = el("span", { class: c >= 0 ? "up" : "down" });
    fill.style.width = `${(50 * Math.abs(c)) / scale}%`;  // CSSOM, which the page's CSP allows (no style attribute)
    bar.append(fill);
    const cell = el("td"); cell.append(bar);
    tr.append(el("td", {}, input.display), el("td", {}, shown), el("td", { class: word[0] }, word[1]), cell);
    body.append(tr);
  }
}

function drawEffects(values) {
  // the released model's effect curves (model.json, public facts), with this patient's value marked
  const box = $("effect-curves");
  box.replaceChildren();
  const W = 320, H = 200, L = 46, R = 12, T = 10, B = 38, NS = "http://www.w3.org/2000/svg";
  for (const e of MODEL.effects || []) {
    const svg = document.createElementNS(NS, "svg");
    const shape = (tag, attrs) => { const n = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); svg.append(n); return n; };
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("data-effect", e.name);
    const ratio = e[`${e.ratio}_ratio`];  // hazard ratios (Cox) or odds ratios (logistic)
    svg.setAttribute("aria-label", `${e.ratio === "odds" ? "Odds" : "Hazard"} ratio by ${e.display}, against ${fmt(e.reference)} ${e.unit_text}`);
    const lo = Math.log(Math.min(...e.lower)), hi = Math.log(Math.max(...e.upper));
    const x0 = e.x[0], x1 = e.x[e.x.length - 1];
    const x = (v) => L + ((W - L - R) * (v - x0)) / (x1 - x0);
    const y = (hr) => T + ((H - T - B) * (hi - Math.log(hr))) / Math.max(1e-9, hi - lo);
    const band = e.x.map((v, i) => `${x(v)},${y(e.lower[i])}`).concat(e.x.map((v, i) => `${x(v)},${y(e.upper[i])}`).reverse());
    shape("polygon", { points: band.join(" "), fill: "#9cc3ea", "fill-opacity": 0.6 });
    shape("line", { x1: L, x2: W - R, y1: y(1), y2: y(1), stroke: "#4a5562", "stroke-dasharray": "3 3" });
    shape("polyline", { points: e.x.map((v, i) => `${x(v)},${y(ratio[i])}`).join(" "), fill: "none", stroke: "#0b5cad", "stroke-width": 2 });
    for (const t of [x0, e.reference, x1]) {
      shape("text", { x: x(t), y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#4a5562" }).textContent = fmt(t);
    }
    shape("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#4a5562" }).textContent = `${e.display} (${e.unit_text})`;
    for (const hr of [Math.exp(lo), 1, Math.exp(hi)]) {
      shape("text", { x: L - 4, y: y(hr) + 4, "text-anchor": "end", "font-size": 11, fill: "#4a5562" }).textContent = hr.toFixed(2);
    }
    const v = Number(values[e.name]);
    if (Number.isFinite(v) && v >= x0 && v <= x1) {
      let i = 0; while (i < e.x.length - 1 && e.x[i + 1] <= v) i += 1;
      const j = Math.min(i + 1, e.x.length - 1), f = j === i ? 0 : (v - e.x[i]) / (e.x[j] - e.x[i]);
      const hr = Math.exp((1 - f) * Math.log(ratio[i]) + f * Math.log(ratio[j]));
      shape("circle", { cx: x(v), cy: y(hr), r: 5, fill: "#a4262c", "data-value": String(v) });
    }
    box.append(svg);
  }
  show("effects", (MODEL.effects || []).length > 0);
}

// ------------------------------------------------------------------------------- start
function describeModel(m) {
  $("model-title").textContent = `— ${m.ref}`;
  $("about-model").textContent = `${m.ref} (${m.kind}, ${m.outcome})`;
  $("about-released").textContent = m.released || "not recorded";
  $("about-sha").textContent = m.sha256;
  $("about-use").textContent = m.purpose;
  $("curve-title").textContent = `Free of ${m.event} over time`;
  show("curve-title", m.curve);
  show("curve-figure", m.curve);
  $("result-title").textContent = m.curve ? "Estimated risk" : `Estimated probability of ${m.event}`;
  $("drivers-note").textContent = `Each input's effect on the ${m.ratio === "odds" ? "odds of the outcome" : "hazard"} `
    + `relative to the model's ${m.ratio === "odds" ? "reference" : "average"} patient; a bar to the right raises the `
    + "risk, to the left lowers it.";
  $("effects-note").textContent = `The ${m.ratio} ratio against the model's reference patient as one input alone `
    + "varies over its validated range (line) with its 95% interval (band); the dot marks this patient's value.";
  $("about-limits").replaceChildren(...m.limitations.map((t) => el("li", {}, t)));
  show("about", true);
  // a consent revocation flagged the model "retrain due": still in service until its deadline
  $("retrain-text").textContent = m.retrain_due ? m.retrain_due.notice : "";
  show("retrain-notice", Boolean(m.retrain_due));
}

async function main() {
  const params = new URLSearchParams(location.search);
  try {
    if (params.has("code") || params.has("error")) await finishLaunch(params);
    else if (params.has("launch")) return await startLaunch(params);
    else Object.assign(session, JSON.parse(sessionStorage.getItem("fedprog.session") || "{}"));
  } catch (err) {
    $("context").textContent = "Not signed in.";
    status(err.message);
    return;
  }
  const m = await getJson(`${location.origin}/app/model.json`);
  if (!m.ok) { $("context").textContent = "No model in service."; status((m.body && m.body.issue && m.body.issue[0].diagnostics) || `The server answered ${m.status}.`); return; }
  MODEL = m.body;
  describeModel(MODEL);
  buildForm();
  if (session.token) {
    $("context").textContent = `Patient ${session.patient} · signed in as ${session.user} (EHR launch)`;
  } else {
    $("context").textContent = "Demonstration mode: no EHR launch.";
    show("token-box", true);
  }
  $("inputs").addEventListener("submit", (e) => { submit(e).catch((err) => { status(""); refuse([err.message]); }); });
  show("inputs", true);
}

document.addEventListener("DOMContentLoaded", main);
