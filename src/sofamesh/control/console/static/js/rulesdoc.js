// The rules document as the console edits it: kinds, their form fields, and lookups.

const COMMON = [
  { key: "name", label: "Name" },
  { key: "service", label: "Service", required: true },
  { key: "method", label: "Method" },
];
const DIRECTION = { key: "direction", label: "Direction", type: "select", options: ["", "inbound", "outbound"] };
const SHADOW = { key: "enforcement.shadow", label: "Shadow mode (count, do not enforce)", type: "bool" };

// Kinds that reject nothing have no shadow mode; `noShadow` says why, on their pages.
export const KINDS = {
  routes: { title: "Routes and splits", noShadow: "Routes and splits have no shadow mode: they decide where a call goes and reject none, so there is nothing to count before enforcing. Move traffic in small steps instead (a split of 95/5, then more), watching the service's success rate.", fields: [
    { key: "name", label: "Name" }, { key: "service", label: "Service", required: true },
    { key: "match", label: "Match (JSON)", type: "json" }, { key: "split", label: "Split (JSON list of {subset, weight})", type: "json" },
    { key: "subset_fallback", label: "Subset fallback", type: "select", options: ["", "none", "any"] },
    { key: "timeout", label: "Timeout (s)", type: "number" }, { key: "retry", label: "Retry (JSON)", type: "json" },
  ] },
  load_balancing: { title: "Load balancing", noShadow: "Load balancing has no shadow mode: it chooses among a service's endpoints and rejects no call.", fields: [
    { key: "service", label: "Service", required: true }, { key: "hash", label: "Hash (JSON)", type: "json" },
    { key: "zone_aware", label: "Zone aware (JSON)", type: "json" }, { key: "slow_start", label: "Slow start (JSON)", type: "json" },
  ] },
  breakers: { title: "Circuit breakers", would: "Would reject (calls)", opens: true, fields: [
    ...COMMON, { key: "strategy", label: "Strategy", type: "select", options: ["", "error_ratio", "error_count", "slow_request_ratio"] },
    { key: "threshold", label: "Threshold", type: "number" }, { key: "max_response_time", label: "Max response time (s)", type: "number" },
    { key: "min_request_count", label: "Min request count", type: "number" }, { key: "recovery_timeout", label: "Recovery timeout (s)", type: "number" },
    SHADOW,
  ] },
  rate_limits: { title: "Rate limits", would: "Would reject (calls)", fields: [
    ...COMMON, DIRECTION, { key: "caller", label: "Caller" }, { key: "count", label: "Count (calls/s)", type: "number", required: true },
    { key: "grade", label: "Grade", type: "select", options: ["", "qps", "concurrency"] },
    { key: "behavior", label: "Behavior", type: "select", options: ["", "reject", "warm_up", "pacing"] },
    SHADOW,
  ] },
  hot_params: { title: "Hot parameters", would: "Would reject (calls)", fields: [
    ...COMMON, DIRECTION, { key: "header", label: "Header" }, { key: "query", label: "Query argument" },
    { key: "count", label: "Count per duration", type: "number", required: true }, { key: "burst", label: "Burst", type: "number" },
    { key: "duration", label: "Duration (s)", type: "number" }, { key: "overrides", label: "Overrides (JSON)", type: "json" }, SHADOW,
  ] },
  auth: { title: "Auth", single: true, would: "Would deny (calls)", fields: [
    { key: "inbound", label: "Inbound policy (JSON)", type: "json" }, { key: "outbound", label: "Outbound policy (JSON)", type: "json" },
  ] },
  faults: { title: "Faults", noShadow: "Faults have no shadow mode: a fault is itself the experiment. Start with a small percentage (abort.percentage, delay.percentage), on one method or behind a header match.", fields: [
    ...COMMON, DIRECTION, { key: "delay", label: "Delay (JSON)", type: "json" }, { key: "abort", label: "Abort (JSON)", type: "json" },
    { key: "headers", label: "Headers (JSON)", type: "json" },
  ] },
  fallbacks: { title: "Fallbacks", would: "Would answer with the fallback (calls)", fields: [
    ...COMMON, DIRECTION, { key: "when", label: "When (JSON list)", type: "json" }, { key: "force", label: "Force (manual degradation)", type: "bool" },
    { key: "response", label: "Response (JSON)", type: "json" }, SHADOW,
  ] },
  resource_limits: { title: "Resource limits", would: "Would reject (calls)", fields: [...COMMON, { key: "max_requests", label: "Max requests", type: "number" },
    { key: "max_retries", label: "Max retries", type: "number" }, SHADOW] },
};

// The decision rows' `kind` for each section (the data planes' stats name them so).
export const ENFORCING = ["breakers", "rate_limits", "hot_params", "resource_limits", "fallbacks", "auth"];

// Where a rule's shadow switch is: auth has one per direction's policy.
export function shadowPaths(kind, rule) {
  if (kind !== "auth") return ["enforcement.shadow"];
  return ["inbound", "outbound"].filter((side) => rule && rule[side]).map((side) => `${side}.enforcement.shadow`);
}

// The decision rows that count a rule: auth reports one summary row per direction.
export function decisionNames(kind, rule, i) {
  if (kind === "auth") return ["auth.inbound", "auth.outbound"];
  return [ruleName(kind, rule, i)];
}

export function rulesOf(doc, kind) {
  const v = (doc || {})[kind];
  if (KINDS[kind].single) return v ? [v] : [];
  return Array.isArray(v) ? v : [];
}

export const ruleName = (kind, rule, i) => rule.name || (KINDS[kind].single ? kind : `${kind}[${i}]`);

export function inShadow(rule) {
  if (!rule) return false;
  return Boolean(rule.enforcement?.shadow || rule.inbound?.enforcement?.shadow || rule.outbound?.enforcement?.shadow);
}

export function get(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

export function set(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  keys.slice(0, -1).forEach((k) => {
    if (typeof o[k] !== "object" || o[k] === null) o[k] = {};
    o = o[k];
  });
  const last = keys[keys.length - 1];
  if (value === undefined) delete o[last];
  else o[last] = value;
  if (keys.length > 1 && typeof o === "object" && !Object.keys(o).length) set(obj, keys.slice(0, -1).join("."), undefined);
}

export function affecting(doc, service) {
  const found = [];
  for (const kind of Object.keys(KINDS)) {
    if (KINDS[kind].single) {
      const pol = (doc || {})[kind] || {};
      for (const side of ["inbound", "outbound"]) {
        const mode = { enforcement: pol[side]?.enforcement }; // the policy's shadow switch
        (pol[side]?.rules || []).forEach((r) => r.service === service && found.push({ kind, index: 0, rule: { ...r, ...mode }, name: r.name || `${kind}.${side}` }));
      }
      continue;
    }
    rulesOf(doc, kind).forEach((r, i) => r.service === service && found.push({ kind, index: i, rule: r, name: ruleName(kind, r, i) }));
  }
  return found;
}

export function withRule(doc, kind, index, rule) {
  const next = structuredClone(doc || {});
  if (KINDS[kind].single) {
    next[kind] = rule;
    return next;
  }
  const list = Array.isArray(next[kind]) ? next[kind] : [];
  if (rule === null) list.splice(index, 1);
  else if (index >= list.length) list.push(rule);
  else list[index] = rule;
  if (list.length) next[kind] = list;
  else delete next[kind];
  return next;
}
