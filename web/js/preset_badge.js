// FewStep LoRA badge: when a LoRA is picked in FewStepLoraLoader, show the preset it was
// recognised as (family, steps, cfg, sampler/scheduler) from GET /fewstep/lora_info, and
// offer one click that writes those values into the KSampler(s) the node's MODEL feeds.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const NODE_ID = "FewStepLoraLoader";
const BADGE = "fewstep_badge";
const WATCHED = ["lora_name", "preset", "steps"];
const TARGETS = ["steps", "cfg", "sampler_name", "scheduler"];
const MODEL_TYPES = new Set(["MODEL", "*"]);
const APPLY_TITLE = "Write steps, cfg, sampler and scheduler into the KSampler(s) this node's MODEL feeds";
// needs_sigmas: the preset's recommended path is the node's `sigmas` output into
// SamplerCustom, because KSampler's scheduler cannot run its timesteps.
const SIGMAS_TITLE = "This preset runs from the node's `sigmas` output: connect it to SamplerCustom " +
  "(KSampler's scheduler cannot run its timesteps)";

const findWidget = (node, name) => node.widgets?.find((w) => w.name === name);

async function fetchInfo(node) {
  const params = new URLSearchParams({
    lora_name: String(findWidget(node, "lora_name")?.value ?? ""),
    preset: String(findWidget(node, "preset")?.value ?? "auto"),
    steps: String(findWidget(node, "steps")?.value ?? -1),
  });
  try {
    const res = await api.fetchApi(`/fewstep/lora_info?${params}`);
    const body = await res.json().catch(() => ({}));
    return res.ok ? body : { error: body.error ?? `HTTP ${res.status}` };
  } catch (err) {
    return { error: `FewStep route unavailable (${err})` };
  }
}

function getLink(graph, id) {
  return typeof graph.links?.get === "function" ? graph.links.get(id) : graph.links?.[id];
}

// KSampler-like nodes downstream of output 0 (MODEL), following MODEL links through
// other nodes (model patches, reroutes) but not past a sampler.
export function samplersFedBy(node) {
  const graph = node.graph ?? app.graph;
  const found = [];
  const seen = new Set([node.id]);
  const queue = [[node, 0]];
  while (queue.length) {
    const [current, slot] = queue.shift();
    for (const linkId of current.outputs?.[slot]?.links ?? []) {
      const link = getLink(graph, linkId);
      const target = link && graph.getNodeById(link.target_id);
      if (!target || seen.has(target.id)) continue;
      seen.add(target.id);
      if (TARGETS.every((name) => findWidget(target, name))) {
        found.push(target);
        continue;
      }
      (target.outputs ?? []).forEach((out, i) => {
        if (MODEL_TYPES.has(out.type)) queue.push([target, i]);
      });
    }
  }
  return found;
}

function applyToSamplers(node) {
  const info = node.fewstepInfo;
  if (!info || info.steps == null || info.needs_sigmas) return 0;
  const samplers = samplersFedBy(node);
  for (const sampler of samplers) {
    for (const name of TARGETS) {
      const linked = sampler.inputs?.some((input) => input.name === name && input.link != null);
      const widget = findWidget(sampler, name);
      if (linked || !widget) continue; // a linked input already gets the value from the graph
      widget.value = info[name];
      widget.callback?.(widget.value, app.canvas, sampler);
    }
  }
  node.graph?.setDirtyCanvas(true, true);
  return samplers.length;
}

function makeBadge(node) {
  const el = document.createElement("div");
  el.className = "fewstep-badge";
  Object.assign(el.style, {
    display: "flex", alignItems: "center", gap: "6px", padding: "0 2px", fontSize: "11px", boxSizing: "border-box",
    fontFamily: "sans-serif", color: "var(--input-text, #ddd)", overflow: "hidden",
  });
  const text = document.createElement("span");
  text.className = "fewstep-badge-text";
  Object.assign(text.style, {
    flex: "1", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis", padding: "1px 6px",
    borderRadius: "4px", background: "rgba(90, 150, 255, 0.18)",
  });
  const button = document.createElement("button");
  button.className = "fewstep-apply";
  button.textContent = "Apply to KSampler";
  button.title = APPLY_TITLE;
  Object.assign(button.style, { fontSize: "11px", padding: "1px 6px", cursor: "pointer" });
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    const count = applyToSamplers(node);
    button.textContent = count ? `Applied to ${count} KSampler${count > 1 ? "s" : ""}` : "No KSampler on MODEL";
    setTimeout(() => (button.textContent = "Apply to KSampler"), 2500);
  });
  el.append(text, button);
  const widget = node.addDOMWidget(BADGE, "fewstep-badge", el, {
    serialize: false,
    hideOnZoom: false,
    getValue: () => undefined,
    setValue: () => {},
    margin: 4,
    getMinHeight: () => 30,
    getMaxHeight: () => 30,
  });
  widget.serialize = false; // a display: keep the node's saved widget values unchanged
  node.setSize([Math.max(node.size[0], 380), Math.max(node.size[1], node.computeSize()[1])]);
  return { widget, text, button };
}

async function refresh(node) {
  const seq = (node.fewstepSeq = (node.fewstepSeq ?? 0) + 1);
  const info = await fetchInfo(node);
  if (seq !== node.fewstepSeq) return; // a newer pick is on its way
  node.fewstepInfo = info;
  node.fewstepBadge ??= makeBadge(node);
  const { text, button } = node.fewstepBadge;
  text.textContent = info.error ? `\u26a0 ${info.error}` : info.badge;
  text.title = info.error ?? info.info ?? "";
  button.disabled = !!info.error || info.steps == null || !!info.needs_sigmas;
  button.title = info.needs_sigmas ? SIGMAS_TITLE : APPLY_TITLE;
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "FewStep.PresetBadge",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_ID) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      for (const name of WATCHED) {
        const widget = findWidget(this, name);
        if (!widget) continue;
        const callback = widget.callback;
        const node = this;
        widget.callback = function () {
          const r = callback?.apply(this, arguments);
          refresh(node);
          return r;
        };
      }
      setTimeout(() => refresh(this), 0); // after a loaded workflow has set the values
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      refresh(this);
      return result;
    };
  },
});
