// Validates every object of rendered manifests (kubectl kustomize output) against the Kubernetes OpenAPI schemas
// bundled in kubernetes-models, offline. Usage: node validate.mjs FILE.yaml... ; exit 1 on the first invalid file.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failed = 0, checked = 0;
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) { console.error(`${file}: YAML error: ${doc.errors[0].message}`); failed++; continue; }
    const obj = doc.toJS();
    if (!obj) continue;
    const where = `${file}: ${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"}`;
    if (!obj.apiVersion || !obj.kind) { console.error(`${where}: no apiVersion/kind`); failed++; continue; }
    const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : [null, obj.apiVersion];
    const path = `kubernetes-models/${group ? group + "/" : ""}${version}/${obj.kind}`;
    let Model;
    try { Model = (await import(path))[obj.kind]; }
    catch { console.error(`${where}: unknown kind ${obj.apiVersion} ${obj.kind}`); failed++; continue; }
    try { new Model(obj).validate(); checked++; }
    catch (e) { console.error(`${where}: ${e.message}`); failed++; }
  }
}
console.log(`${checked} objects valid, ${failed} invalid`);
process.exit(failed ? 1 : 0);
