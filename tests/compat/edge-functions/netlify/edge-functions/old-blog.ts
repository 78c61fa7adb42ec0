import type { Config, Context } from "@netlify/edge-functions";

// Permanent redirect from the old blog URLs to the new ones.
export default async (request: Request, context: Context) => {
  return Response.redirect(new URL(`/blog/${context.params.slug}`, request.url), 301);
};

export const config: Config = { path: "/old-blog/:slug" };
