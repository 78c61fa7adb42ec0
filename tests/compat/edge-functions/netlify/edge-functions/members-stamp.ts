import type { Context } from "@netlify/edge-functions";

// Declared in netlify.toml after members-gate, so it only sees requests the
// gate let through (and stylesheets, which the gate excludes).
export default async (request: Request, context: Context) => {
  const response = await context.next();
  response.headers.set("x-members-stamp", "checked");
  return response;
};
