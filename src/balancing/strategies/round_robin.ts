import type { Server } from "../server.ts";
import { eligible } from "../availability.ts";
import type { PickContext, Strategy } from "./types.ts";

/** Even rotation over the available servers (weights ignored; see weighted-round-robin). */
export function roundRobin(): Strategy {
  let next = 0;
  return {
    name: "round-robin",
    pick(servers: readonly Server[], ctx: PickContext): Server | undefined {
      const n = servers.length;
      for (let i = 0; i < n; i++) {
        const s = servers[(next + i) % n];
        if (eligible(s, ctx)) {
          next = (next + i + 1) % n;
          return s;
        }
      }
      return undefined;
    },
  };
}
