import type { Config } from "@netlify/edge-functions";

// Fails every time; onError sends the visitor to a maintenance page.
export default async () => {
  throw new Error("broken on purpose");
};

export const config: Config = { path: "/broken", onError: "/maintenance" };
