/**
 * The one home of the rules for a strategy and its options (`strategy:` and `hash:` in
 * lb.yaml, `strategy` in the state file, `PUT /api/strategy`).
 */
import { z } from "zod";
import { STRATEGIES, STRATEGY_NAMES } from "../balancing/strategies/registry.ts";

export const strategyNameSchema = z.string({
  required_error: "is required",
  invalid_type_error: "must be a string",
}).refine((s) => Object.hasOwn(STRATEGIES, s), {
  message: `must be one of: ${STRATEGY_NAMES.join(", ")}`,
});

/** What identifies a request for consistent-hash and maglev. */
export const hashKeySchema = z.string().regex(
  /^(ip|path|(header|cookie|query):[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/,
  { message: "must be ip, path, header:NAME, cookie:NAME or query:NAME" },
);

/** The options of the hashing strategies, each optional (a change names only what it changes). */
export const hashOptionsSchema = z.object({
  key: hashKeySchema,
  balanceFactor: z.number().refine(
    (n) => n === 0 || n > 1,
    "must be 0 (off) or greater than 1, like 1.25",
  ),
  vnodes: z.number().int().min(1).max(10_000),
  tableSize: z.number().int().min(7).max(1_000_003),
}).strict().partial();

export type HashOptions = Required<z.infer<typeof hashOptionsSchema>>;

/** The hash options lb uses when lb.yaml says nothing. */
export const HASH_DEFAULTS: HashOptions = {
  key: "ip",
  balanceFactor: 0,
  vnodes: 160,
  tableSize: 65537,
};

/** `hash:` in lb.yaml: every option, defaults filled in. */
export const hashSchema = hashOptionsSchema.default({})
  .transform((h): HashOptions => ({ ...HASH_DEFAULTS, ...h }));
