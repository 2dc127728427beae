// What this server offers, read from its OpenAPI document once, so optional parts of the
// app (users administration, memory browsing, renaming) appear only where the route exists
// instead of being probed with requests that fail.
let doc = null;

export async function hasRoute(method, path) {
  if (!doc) {
    doc = fetch("/openapi.json", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .catch(() => ({ paths: {} }));
  }
  const paths = (await doc).paths || {};
  return Boolean(paths[path] && paths[path][method.toLowerCase()]);
}
