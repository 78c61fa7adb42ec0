import type { Context } from "@netlify/edge-functions";

// Declared in netlify.toml (before members-stamp): refuses visitors without
// the token, lets the others through by returning nothing.
export default async (request: Request, context: Context) => {
  if (request.headers.get("authorization") !== "Bearer open-sesame") {
    return new Response("Unauthorized", {
      status: 401,
      headers: { "www-authenticate": 'Bearer realm="members"' },
    });
  }
};
