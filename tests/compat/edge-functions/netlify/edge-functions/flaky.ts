import type { Config } from "@netlify/edge-functions";

// Fails every time; with onError "bypass" the visitor gets the page as if
// the function were not there.
export default async () => {
  throw new Error("the personalisation service is down");
};

export const config: Config = { path: "/flaky", onError: "bypass" };
