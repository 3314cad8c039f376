import { isAvailable, type Server } from "../pool.ts";
import type { PickContext } from "./types.ts";

/** Whether a strategy may pick `s` for this request: available (or panic), and not excluded. */
export function eligible(s: Server, ctx: PickContext): boolean {
  if (ctx.exclude !== undefined && ctx.exclude.has(s)) return false;
  return ctx.panic ? !s.removed && s.enabled && !s.draining : isAvailable(s, ctx.now);
}
