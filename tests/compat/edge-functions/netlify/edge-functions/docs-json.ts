import type { Config, Context } from "@netlify/edge-functions";

// Answers with JSON when asked with ?format=json; otherwise returns nothing
// and the static page is served.
export default async (request: Request, context: Context) => {
  const url = new URL(request.url);
  if (url.searchParams.get("format") !== "json") {
    return;
  }
  return Response.json({ page: url.pathname, format: "json" });
};

export const config: Config = {
  path: "/docs/*",
  excludedPath: ["/docs/raw/*"],
};
