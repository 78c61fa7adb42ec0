import type { Config } from "@netlify/edge-functions";

// Reads an environment variable of the site.
export default async () => {
  const greeting = Netlify.env.get("COMPAT_GREETING") ?? "(not set)";
  return new Response(`${greeting}\n`, {
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
};

export const config: Config = { path: "/greeting" };
