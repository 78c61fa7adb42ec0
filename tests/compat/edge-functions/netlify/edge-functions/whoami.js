// Plain JavaScript: reads request headers, the query and cookies, sets one
// cookie and deletes another.
export default async (request, context) => {
  const url = new URL(request.url);
  const session = context.cookies.get("session") ?? null;
  if (session) {
    context.cookies.delete("legacy");
  }
  context.cookies.set({ name: "seen", value: "1", maxAge: 3600, path: "/" });
  return Response.json({
    method: request.method,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    client: request.headers.get("x-client"),
    session,
  });
};

export const config = { path: "/whoami" };
