import type { Config, Context } from "@netlify/edge-functions";

// Netlify's "transform a response" example: only with ?method=transform,
// otherwise the page is served as it is.
export default async (request: Request, context: Context) => {
  const url = new URL(request.url);
  if (url.searchParams.get("method") !== "transform") {
    return;
  }
  const response = await context.next();
  const page = await response.text();
  const updated = page.replace("%PRODUCT%", "teapots and kettles");
  const transformed = new Response(updated, response);
  transformed.headers.set("x-transformed", "true");
  return transformed;
};

export const config: Config = { path: "/about" };
