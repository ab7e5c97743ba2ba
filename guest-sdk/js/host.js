// Where durable calls go inside a component: the host's imports themselves.
//
// package.json maps the SDK's "#host" here for every resolver but Node's
// ("node" condition: ./host-node.js, the fake's router). Bundlers targeting
// a browser or no platform (rolldown's default, esbuild's, the `durable build`
// command's) pick this file, so the bundle imports
// durable:workflow/durable@0.2.0, which componentize-js provides.

import * as durable from "durable:workflow/durable@0.2.0";

export { durable };

/** In a component `fetch` sends requests: nothing to refuse. */
export function checkFetch() {}
