// Validates every object of rendered manifests (kubectl kustomize output) against the Kubernetes OpenAPI schemas
// bundled in kubernetes-models (cert-manager's kinds: @kubernetes-models/cert-manager), offline, then checks the
// deployment's security rules (checkSecurity below). Usage: node validate.mjs FILE.yaml... ; exit 1 when anything fails.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failed = 0, checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const objects = [];
  for (const doc of docs) {
    if (doc.errors.length) { console.error(`${file}: YAML error: ${doc.errors[0].message}`); failed++; continue; }
    const obj = doc.toJS();
    if (!obj) continue;
    const where = `${file}: ${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"}`;
    if (!obj.apiVersion || !obj.kind) { console.error(`${where}: no apiVersion/kind`); failed++; continue; }
    const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
    const pkg = group?.endsWith("cert-manager.io") ? "@kubernetes-models/cert-manager" : "kubernetes-models";
    const path = `${pkg}/${group ? group + "/" : ""}${version}/${obj.kind}`;
    objects.push(obj);
    // kustomize folds long base64 values over lines; the API server's decoder skips the line breaks, the schema's not
    if (obj.kind === "Secret" && obj.data)
      obj.data = Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, String(v).replace(/[\r\n]/g, "")]));
    let Model;
    try { Model = (await import(path))[obj.kind]; }
    catch { console.error(`${where}: unknown kind ${obj.apiVersion} ${obj.kind}`); failed++; continue; }
    try { new Model(obj).validate(); checked++; }
    catch (e) { console.error(`${where}: ${e.message}`); failed++; }
  }
  for (const problem of checkSecurity(objects)) { console.error(`${file}: ${problem}`); failed++; }
}
console.log(`${checked} objects valid, ${failed} invalid`);
process.exit(failed ? 1 : 0);

// Cluster formation without a seed list (deploy/k8s/README.md, "How the nodes find each other"): with
// ACTORSEG_DISCOVERY__METHOD=kubernetes, a node pod (an ActorSeg container running `node`) must match the discovery's
// label selector, have the container port the discovery looks for (ACTORSEG_DISCOVERY__PORTNAME) on the bootstrap
// endpoint's port (ACTORSEG_MANAGEMENTPORT), run as a service account whose token is mounted and that a RoleBinding
// lets get, list and watch pods, be reachable on that port by a NetworkPolicy, and have no seed list; a pod that is
// not a node must not match the selector (the nodes would wait for its answer).
function checkBootstrap(name, tpl, actorseg, objects) {
  const problems = [];
  const spec = tpl.spec ?? {};
  const settings = {};
  for (const c of actorseg) {
    for (const e of c.envFrom ?? []) Object.assign(settings, objects.find(o => o.kind === "ConfigMap" && o.metadata?.name === e.configMapRef?.name)?.data ?? {});
    for (const e of c.env ?? []) if (e.value !== undefined) settings[e.name] = e.value;
  }
  if (String(settings.ACTORSEG_DISCOVERY__METHOD ?? "none").toLowerCase() !== "kubernetes") return problems;
  const isNode = actorseg.some(c => (c.args ?? [])[0] === "node" || (c.command ?? []).includes("node"));
  const selector = String(settings.ACTORSEG_DISCOVERY__LABELSELECTOR ?? "actorseg/cluster={0}").replaceAll("{0}", settings.ACTORSEG_DISCOVERY__SERVICENAME ?? "actorseg");
  const wanted = selector.split(",").map(t => t.trim()).filter(Boolean).map(t => t.split("="));
  if (wanted.some(kv => kv.length !== 2)) { problems.push(`${name}: the label selector "${selector}" is not k=v[,k=v] (the only form checked here)`); return problems; }
  const labels = tpl.metadata?.labels ?? {};
  const matches = wanted.every(([k, v]) => labels[k.trim()] === v.trim());
  if (!isNode) {
    if (matches) problems.push(`${name}: not a cluster node, yet it matches the discovery's label selector ${selector}`);
    return problems;
  }
  if (!matches) problems.push(`${name}: a node pod that the discovery's label selector ${selector} does not find`);
  if (settings.ACTORSEG_SEEDS) problems.push(`${name}: ACTORSEG_SEEDS is set although the nodes find each other by discovery`);
  const portName = settings.ACTORSEG_DISCOVERY__PORTNAME ?? "management", port = Number(settings.ACTORSEG_MANAGEMENTPORT ?? 8558);
  const ports = actorseg.flatMap(c => c.ports ?? []);
  if (!ports.some(p => p.name === portName && p.containerPort === port))
    problems.push(`${name}: no container port named ${portName} on ${port} (ACTORSEG_DISCOVERY__PORTNAME, ACTORSEG_MANAGEMENTPORT)`);
  const sa = spec.serviceAccountName ?? "default";
  const account = objects.find(o => o.kind === "ServiceAccount" && o.metadata?.name === sa);
  if (spec.automountServiceAccountToken === false || (spec.automountServiceAccountToken !== true && account?.automountServiceAccountToken === false))
    problems.push(`${name}: the service account token is not mounted, so the pod cannot list pods`);
  const roleGrants = r => (r?.rules ?? []).some(rule => (rule.apiGroups ?? []).includes("") && ((rule.resources ?? []).includes("pods") || (rule.resources ?? []).includes("*"))
    && ["get", "list", "watch"].every(v => (rule.verbs ?? []).includes(v) || (rule.verbs ?? []).includes("*")));
  const bound = objects.some(b => b.kind === "RoleBinding" && (b.subjects ?? []).some(s => s.kind === "ServiceAccount" && s.name === sa)
    && roleGrants(objects.find(r => r.kind === (b.roleRef?.kind ?? "Role") && r.metadata?.name === b.roleRef?.name)));
  if (!bound) problems.push(`${name}: its service account ${sa} is not bound to a Role that may get, list and watch pods`);
  const selects = (sel) => Object.entries(sel?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const reachable = objects.some(o => o.kind === "NetworkPolicy" && selects(o.spec?.podSelector)
    && (o.spec?.ingress ?? []).some(rule => (rule.ports ?? []).some(p => p.port === port || p.port === portName)
      && (rule.from ?? []).some(f => f.podSelector && selects(f.podSelector))));
  if (!reachable) problems.push(`${name}: no NetworkPolicy lets the other nodes reach its bootstrap endpoint (port ${port})`);
  return problems;
}

// The hardening every overlay must keep (deploy/k8s/README.md, "Running securely"):
// - every pod: runAsNonRoot, a non-root runAsUser, seccomp RuntimeDefault; every container: read-only root
//   filesystem, no privilege escalation, all capabilities dropped;
// - ActorSeg pods (containers that read the ConfigMap "actorseg"): uid 10001, the label the NetworkPolicy selects on,
//   the TLS Secret mounted read-only at /etc/actorseg/tls and an emptyDir at /tmp in every such container;
// - never ACTORSEG_INSECURE, never a plain akka.tcp:// address, no placeholder secret values;
// - a default-deny ingress NetworkPolicy; every Secret and ConfigMap a pod refers to is rendered too, except the
//   TLS Secret (cert-manager or kubectl makes it).
function checkSecurity(objects) {
  const problems = [];
  const external = new Set(["Secret/actorseg-tls"]);
  const rendered = new Set(objects.map(o => `${o.kind}/${o.metadata?.name}`));
  const placeholder = /^(change-?me(-too)?|replace-?me|changeit|secret|password|example|todo|xxx+)$/i;
  const insecure = v => /^(1|true|yes|on)$/i.test(String(v ?? "").trim());
  const pods = [];
  for (const o of objects) {
    const name = `${o.kind} ${o.metadata?.name}`;
    if (o.kind === "CronJob") pods.push([name, o.spec?.jobTemplate?.spec?.template]);
    else if (o.kind === "Pod") pods.push([name, { metadata: o.metadata, spec: o.spec }]);
    else if (o.spec?.template?.spec?.containers) pods.push([name, o.spec.template]);
    if (o.kind === "ConfigMap")
      for (const [k, v] of Object.entries(o.data ?? {})) {
        if (k === "ACTORSEG_INSECURE" && insecure(v)) problems.push(`${name}: ACTORSEG_INSECURE is set`);
        if (String(v).includes("akka.tcp://")) problems.push(`${name}: ${k} has a plain akka.tcp:// address (TLS: akka.ssl.tcp://)`);
      }
    if (o.kind === "Secret") {
      const values = { ...Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()])), ...(o.stringData ?? {}) };
      for (const [k, v] of Object.entries(values))
        if (placeholder.test(v.trim()) || /change-?me|replace-?me/i.test(v)) problems.push(`${name}: ${k} is a placeholder value`);
    }
  }
  if (pods.length && !objects.some(o => o.kind === "NetworkPolicy" && !Object.keys(o.spec?.podSelector ?? {}).length
      && o.spec?.policyTypes?.includes("Ingress") && !o.spec?.ingress?.length))
    problems.push("no default-deny ingress NetworkPolicy (podSelector {}, policyTypes [Ingress], no rules)");
  for (const [name, tpl] of pods) {
    const spec = tpl?.spec ?? {}, psc = spec.securityContext ?? {};
    if (psc.runAsNonRoot !== true) problems.push(`${name}: pod securityContext.runAsNonRoot is not true`);
    if (!(psc.runAsUser > 0)) problems.push(`${name}: pod securityContext.runAsUser is not a non-root uid`);
    if (psc.seccompProfile?.type !== "RuntimeDefault") problems.push(`${name}: pod seccompProfile is not RuntimeDefault`);
    const volumes = new Map((spec.volumes ?? []).map(v => [v.name, v]));
    for (const v of spec.volumes ?? []) {
      if (v.secret && !rendered.has(`Secret/${v.secret.secretName}`) && !external.has(`Secret/${v.secret.secretName}`))
        problems.push(`${name}: volume ${v.name} refers to Secret ${v.secret.secretName}, which is not rendered`);
    }
    const containers = [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
    const actorseg = containers.filter(c => (c.envFrom ?? []).some(e => e.configMapRef?.name === "actorseg"));
    for (const c of containers) {
      const csc = c.securityContext ?? {}, where = `${name}: container ${c.name}`;
      if (csc.readOnlyRootFilesystem !== true) problems.push(`${where}: readOnlyRootFilesystem is not true`);
      if (csc.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
      if (!(csc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${where}: capabilities.drop lacks ALL`);
      if (csc.privileged || csc.runAsUser === 0 || csc.runAsNonRoot === false) problems.push(`${where}: runs privileged or as root`);
      // $(VAR) in a value is expanded only from variables defined before it (envFrom, then env in order); otherwise
      // the text stays as it is, e.g. a password "$(POSTGRES_PASSWORD)"
      const defined = new Set((c.envFrom ?? []).flatMap(e => Object.keys(objects.find(o =>
        o.kind === "ConfigMap" && o.metadata?.name === e.configMapRef?.name)?.data ?? {})));
      for (const e of c.env ?? []) {
        for (const [, v] of String(e.value ?? "").matchAll(/(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
          if (!defined.has(v)) problems.push(`${where}: ${e.name} uses $(${v}), which is not defined before it`);
        defined.add(e.name);
        if (e.name === "ACTORSEG_INSECURE" && insecure(e.value)) problems.push(`${where}: ACTORSEG_INSECURE is set`);
        if (String(e.value ?? "").includes("akka.tcp://")) problems.push(`${where}: ${e.name} has a plain akka.tcp:// address`);
        const ref = e.valueFrom?.secretKeyRef ? `Secret/${e.valueFrom.secretKeyRef.name}` : e.valueFrom?.configMapKeyRef ? `ConfigMap/${e.valueFrom.configMapKeyRef.name}` : null;
        if (ref && !rendered.has(ref) && !external.has(ref)) problems.push(`${where}: ${e.name} refers to ${ref}, which is not rendered`);
      }
      for (const e of c.envFrom ?? []) {
        const ref = e.secretRef ? `Secret/${e.secretRef.name}` : `ConfigMap/${e.configMapRef?.name}`;
        if (!rendered.has(ref) && !external.has(ref)) problems.push(`${where}: envFrom refers to ${ref}, which is not rendered`);
      }
    }
    if (!actorseg.length) continue;
    problems.push(...checkBootstrap(name, tpl, actorseg, objects));
    if (psc.runAsUser !== 10001 || psc.runAsGroup !== 10001 || psc.fsGroup !== 10001)
      problems.push(`${name}: an ActorSeg pod runs as ${psc.runAsUser}:${psc.runAsGroup} (fsGroup ${psc.fsGroup}), not 10001`);
    if (tpl.metadata?.labels?.["actorseg/akka"] !== "true")
      problems.push(`${name}: an ActorSeg pod without the label actorseg/akka: "true" (the NetworkPolicy lets only those reach port 4053)`);
    for (const c of actorseg) {
      const mount = p => (c.volumeMounts ?? []).find(m => m.mountPath === p);
      const tls = mount("/etc/actorseg/tls"), tmp = mount("/tmp");
      if (!tls || volumes.get(tls.name)?.secret?.secretName !== "actorseg-tls" || tls.readOnly !== true)
        problems.push(`${name}: container ${c.name} does not mount the Secret actorseg-tls read-only at /etc/actorseg/tls`);
      if (!tmp || !volumes.get(tmp.name)?.emptyDir) problems.push(`${name}: container ${c.name} has no emptyDir at /tmp`);
    }
  }
  return problems;
}
