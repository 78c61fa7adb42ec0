import type { Config, Context } from "@netlify/edge-functions";

// A small JSON API: the name comes from the matched path, POST echoes the
// JSON body it was sent.
export default async (request: Request, context: Context) => {
  const { name } = context.params;
  if (request.method === "POST") {
    const body = await request.json();
    return Response.json({ name, received: body }, { status: 201 });
  }
  const lang = new URL(request.url).searchParams.get("lang") ?? "en";
  const greeting = lang === "fr" ? `Bonjour, ${name}` : `Hello, ${name}`;
  return Response.json(
    { name, greeting },
    { headers: { "x-api-version": "1" } },
  );
};

export const config: Config = {
  path: "/api/:name",
  method: ["GET", "POST"],
};
