import type { Config, Context } from "@netlify/edge-functions";

// Handles the contact form's POST; GET serves the static form page.
export default async (request: Request, context: Context) => {
  const form = new URLSearchParams(await request.text());
  const name = form.get("name") ?? "stranger";
  return new Response(`Thanks, ${name}! We will write back.\n`, {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
};

export const config: Config = { path: "/contact", method: "POST" };
