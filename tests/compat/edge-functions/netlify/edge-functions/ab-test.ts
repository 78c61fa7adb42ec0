import type { Config, Context } from "@netlify/edge-functions";

// A/B test: a returning visitor keeps the bucket stored in a cookie; a new
// one is assigned a bucket and the page is rewritten to that variant. (A real
// site would pick the bucket with Math.random(); `?bucket=a` makes it
// deterministic for the comparison.)
export default async (request: Request, context: Context) => {
  const cookieName = "ab-bucket";
  let bucket = context.cookies.get(cookieName);
  if (!bucket) {
    const forced = new URL(request.url).searchParams.get("bucket");
    bucket = forced === "a" ? "a" : "b";
    context.cookies.set({
      name: cookieName,
      value: bucket,
      path: "/",
      httpOnly: true,
      sameSite: "Lax",
    });
  }
  return new URL(`/variants/${bucket}.html`, request.url);
};

export const config: Config = { path: "/ab" };
